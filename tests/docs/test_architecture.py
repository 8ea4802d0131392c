"""docs/ARCHITECTURE.md on one screen (issue 108, item 6): a line a room for every package of pyproject.toml's layers
contract, the detail in each package's own `__init__.py` docstring."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGE = (ROOT / "docs" / "ARCHITECTURE.md").read_text()


def _layers() -> list[str]:
    """The names of the layers contract (the one `layers = [...]` of pyproject.toml; tomllib is 3.11's)."""
    block = re.search(r"^layers = \[(.*?)^\]", (ROOT / "pyproject.toml").read_text(), re.M | re.S).group(1)
    return [name.strip() for layer in re.findall(r'"([^"]+)"', block) for name in layer.split("|")]


def test_the_page_is_one_screen_with_a_row_for_every_package_of_the_contract():
    assert len(PAGE.splitlines()) <= 70
    missing = [name for name in _layers() if f"| `{name}` |" not in PAGE]
    assert not missing, f"add a row to docs/ARCHITECTURE.md for {missing}"


def test_every_package_says_what_it_holds():
    bare = [str(init.relative_to(ROOT)) for init in sorted((ROOT / "cp_debug").rglob("__init__.py"))
            if not ast.get_docstring(ast.parse(init.read_text()))]
    assert not bare, f"packages without a docstring: {bare}"
