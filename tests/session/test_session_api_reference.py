"""The session API reference (docs/reference/), parsed, against the package: every name, its
async-ness, keyword-only parameters and defaults, properties and dataclass fields."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re
from pathlib import Path
from typing import Any

import pytest

from starlette_webtransport import session as package

REFERENCE = Path(__file__).resolve().parents[2] / "docs/reference/session-api-reference.md"


def _sections() -> dict[str, dict[str, list[str]]]:
    """``{class: {subsection: [bullet lines]}}`` from the markdown."""
    sections: dict[str, dict[str, list[str]]] = {}
    current_class = current_sub = None
    for line in REFERENCE.read_text().splitlines():
        if match := re.match(r"## (\w+) Class", line):
            current_class, current_sub = match.group(1), None
            sections[current_class] = {}
        elif line.startswith("## "):
            current_class = None
        elif current_class and (match := re.match(r"### (.+)", line)):
            current_sub = match.group(1).strip()
            sections[current_class][current_sub] = []
        elif current_class and current_sub and line.startswith("- "):
            sections[current_class][current_sub].append(line)
    return sections


SECTIONS = _sections()


def _signatures(kind: str) -> list[tuple[str, str, str]]:
    """(class, subsection, bullet) for bullets that carry a ``def`` signature."""
    return [
        (cls, sub, line)
        for cls, subs in SECTIONS.items()
        for sub, lines in subs.items()
        if sub in kind
        for line in lines
        if "def " in line
    ]


def _parse_def(bullet: str) -> tuple[bool, ast.FunctionDef | ast.AsyncFunctionDef]:
    source = re.search(r"`((?:async )?def .*?)`", bullet)
    assert source, bullet
    text = source.group(1).replace("...", "**_rest")
    # Annotations in the reference name pywebtransport types; only the shape matters here.
    tree = ast.parse(text + ": pass")
    node = tree.body[0]
    assert isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    return isinstance(node, ast.AsyncFunctionDef), node


def test_the_reference_is_in_the_repository_and_parsed() -> None:
    assert REFERENCE.exists(), REFERENCE
    assert set(SECTIONS) == {"WebTransportSession", "SessionManager", "SessionStats"}
    assert len(_signatures("Instance Methods")) == 14 + 10 + 1


METHODS = _signatures("Instance Methods Class Methods")
SCHEMA_INSTEAD = {
    (factory, name)
    for factory in ("create_structured_stream", "create_structured_datagram_transport")
    for name in ("serializer", "registry")
}
"""The structured factories take a prebuilt ``schema=`` as the alternative to the pair."""


@pytest.mark.parametrize(("cls_name", "sub", "bullet"), METHODS, ids=lambda v: str(v)[:60])
def test_method_matches_the_reference(cls_name: str, sub: str, bullet: str) -> None:
    is_async, node = _parse_def(bullet)
    cls = getattr(package, cls_name)
    attribute = inspect.getattr_static(cls, node.name)
    if sub == "Class Methods":
        assert isinstance(attribute, classmethod), f"{cls_name}.{node.name} is not a classmethod"
    function = getattr(cls, node.name)
    ours_async = inspect.iscoroutinefunction(function) or inspect.isasyncgenfunction(function)
    assert ours_async == is_async, f"{cls_name}.{node.name}: async-ness differs from the reference"
    signature = inspect.signature(function)
    params = signature.parameters
    expected_kwonly = {
        arg.arg: default
        for arg, default in zip(node.args.kwonlyargs, node.args.kw_defaults, strict=True)
    }
    for name, default in expected_kwonly.items():
        assert name in params, f"{cls_name}.{node.name} lacks keyword-only {name!r}"
        assert params[name].kind is inspect.Parameter.KEYWORD_ONLY, (
            f"{node.name}({name}) is not keyword-only"
        )
        if default is None and (node.name, name) in SCHEMA_INSTEAD:
            # Required unless schema= is given instead (docs/session-api.md, "Differs").
            assert params[name].default is None and "schema" in params, node.name
        elif default is None:
            assert params[name].default is inspect.Parameter.empty, (
                f"{node.name}({name}) should be required"
            )
        else:
            assert params[name].default == ast.literal_eval(default), f"{node.name}({name}) default"
    positional = [a.arg for a in node.args.args if a.arg not in ("self", "cls")]
    ours_positional = [
        p.name
        for p in params.values()
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        and p.name not in ("self", "cls")
    ]
    assert ours_positional == positional, f"{cls_name}.{node.name} positional parameters"


def _property_names(cls_name: str) -> list[str]:
    lines = SECTIONS[cls_name].get("Properties", [])
    return [re.match(r"- `(\w+)`", line).group(1) for line in lines]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("cls_name", "name"),
    [(c, n) for c in ("WebTransportSession", "SessionStats") for n in _property_names(c)],
)
def test_property_matches_the_reference(cls_name: str, name: str) -> None:
    attribute = inspect.getattr_static(getattr(package, cls_name), name)
    assert isinstance(attribute, property), f"{cls_name}.{name} is not a property"


def test_reference_lists_every_session_property() -> None:
    assert _property_names("WebTransportSession") == [
        "connection",
        "datagrams",
        "headers",
        "is_closed",
        "is_ready",
        "path",
        "protocol_handler",
        "session_id",
        "state",
    ]


def _attributes() -> list[tuple[str, Any]]:
    result = []
    for line in SECTIONS.get("SessionStats", {}).get("Attributes", []):
        match = re.match(r"- `(\w+)` \(`([^`]+)`\):.*?(?:`Default: (.+)`)?\.?$", line)
        assert match, line
        result.append((match.group(1), match.group(3)))
    return result


def test_session_stats_fields_match_the_reference() -> None:
    fields = {f.name: f for f in dataclasses.fields(package.SessionStats)}
    expected = _attributes()
    assert len(expected) == 12
    assert list(fields) == [name for name, _ in expected]
    for name, default in expected:
        if default is None:
            assert fields[name].default is dataclasses.MISSING, f"{name} should be required"
        else:
            assert fields[name].default == ast.literal_eval(default), f"{name} default"


def test_constructors_match_the_reference() -> None:
    _, node = _parse_def(SECTIONS["SessionManager"]["Constructor"][0])
    params = inspect.signature(package.SessionManager).parameters
    for arg, default in zip(node.args.kwonlyargs, node.args.kw_defaults, strict=True):
        assert params[arg.arg].kind is inspect.Parameter.KEYWORD_ONLY
        assert default is not None and params[arg.arg].default == ast.literal_eval(default)
    # The session is built from an ASGI scope, not a connection (docs/session-api.md).
    session_params = list(inspect.signature(package.WebTransportSession).parameters)
    assert session_params == ["scope", "receive", "send", "config"]
