"""``mypy --strict`` holds every implementation of the ASGI contract to ``asgi.py``'s messages.

The hypercorn adapter's channel (also the Python client's), the in-process test client and
the session each dispatch with ``match message["type"]`` over the contract's union and end
with ``unknown_message(message)``, whose parameter is ``Never``. Here one case is cut from
a copy of each real dispatch, and mypy reads the copy in the module's place
(``--shadow-file``): it must fail at that call and name the message type that was forgotten,
and nothing else may fail. So a server or a session that forgets a message type of the
contract cannot pass the type check the project runs before every commit.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CUTS = [
    # (module file, class.method, the case cut out, the TypedDict mypy must name)
    (
        "starlette_webtransport/transport/channel.py",
        "SessionChannel.send",
        "webtransport.drain",
        "DrainMessage",
    ),
    (
        "starlette_webtransport/testing/client.py",
        "_MemoryChannel.send",
        "webtransport.credit",
        "CreditMessage",
    ),
    (
        "starlette_webtransport/session/demux.py",
        "Demux.receive",
        "webtransport.stream.opened",
        "StreamOpenedEvent",
    ),
]


def without_case(source: str, qualname: str, kind: str) -> str:
    """``source`` with the ``case "<kind>":`` block of ``qualname``'s match removed."""
    class_name, method_name = qualname.split(".")
    tree = ast.parse(source)
    owner = next(
        node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == class_name
    )
    method = next(
        node
        for node in owner.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == method_name
    )
    cases = [
        case
        for node in ast.walk(method)
        if isinstance(node, ast.Match)
        for case in node.cases
        if isinstance(case.pattern, ast.MatchValue)
        and isinstance(case.pattern.value, ast.Constant)
        and case.pattern.value.value == kind
    ]
    assert len(cases) == 1, f"{qualname} has no single `case {kind!r}:` to cut"
    first, last = cases[0].pattern.lineno, cases[0].body[-1].end_lineno
    assert last is not None
    lines = source.splitlines(keepends=True)
    del lines[first - 1 : last]
    return "".join(lines)


def test_mypy_strict_fails_where_an_implementation_forgets_a_message_type(
    tmp_path: Path,
) -> None:
    shadows: list[str] = []
    for index, (path, qualname, kind, _) in enumerate(CUTS):
        shadow = tmp_path / f"cut{index}_{Path(path).name}"
        shadow.write_text(without_case((REPO / path).read_text(), qualname, kind))
        shadows += ["--shadow-file", path, str(shadow)]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-error-summary",
            *shadows,
            *(path for path, *_ in CUTS),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert result.returncode == 1, result.stdout + result.stderr
    assert len(errors) == len(CUTS), result.stdout
    for path, _, _, missing in CUTS:
        expected = (
            f'Argument 1 to "unknown_message" has incompatible type "{missing}"; expected "Never"'
        )
        assert any(line.startswith(path) and expected in line for line in errors), result.stdout
