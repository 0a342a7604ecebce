"""Every Python example in the README and docs/ passes ``mypy --strict``, as a user who
copies it into a typed project would run it.

Each ```python block is a module of its own; one whose first line names a file
(``# app.py``) is written under that name, so the guide's ``test_app.py`` can import the
``app.py`` beside it. Signatures that are not code are fenced as plain text in the docs.
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.tooling.test_user_typing import mypy_strict

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def examples() -> dict[str, str]:
    """File name -> source, for every Python block of the docs."""
    found: dict[str, str] = {}
    for doc in DOCS:
        blocks = re.findall(r"```python\n(.*?)```", doc.read_text(), re.DOTALL)
        for index, block in enumerate(blocks):
            named = re.match(r"# (\w+\.py)\n", block)
            stem = doc.stem.replace("-", "_").lower()
            name = named.group(1) if named else f"{stem}_example_{index}.py"
            assert name not in found, f"two examples are called {name}"
            found[name] = block
    return found


def test_the_docs_have_examples_to_check() -> None:
    found = examples()
    assert len(found) >= 15, sorted(found)
    assert {"app.py", "test_app.py", "readme_example_0.py"} <= set(found)
    assert any("(StructuredEndpoint[" in source for source in found.values())


def test_every_doc_example_passes_mypy_strict(tmp_path: Path) -> None:
    files = examples()
    for name, source in files.items():
        (tmp_path / name).write_text(source)
    result = mypy_strict(tmp_path, *sorted(files))
    assert result.returncode == 0, result.stdout + result.stderr
