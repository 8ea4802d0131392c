"""House rules ruff has no rule for: no function of cp_debug/ is over 120 lines (issue 20 §4).

ruff checks complexity (C901), arguments (PLR0913) and statements (PLR0915) from pyproject.toml; a function
can stay under all three and still run for pages (long literals, long calls), so its length is checked here.
"""

from __future__ import annotations

import ast
from pathlib import Path

MAX_FUNCTION_LINES = 120
PACKAGE = Path(__file__).resolve().parents[1] / "cp_debug"


def long_functions(root: Path, limit: int = MAX_FUNCTION_LINES) -> list[tuple[str, int]]:
    """("path:line name", lines) of every function or method under `root` longer than `limit` lines, decorators
    and docstring included."""
    found = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                lines = node.end_lineno - start + 1
                if lines > limit:
                    found.append((f"{path.relative_to(root.parent)}:{node.lineno} {node.name}", lines))
    return found


def test_no_function_is_over_120_lines():
    offenders = long_functions(PACKAGE)
    assert not offenders, f"functions over {MAX_FUNCTION_LINES} lines (split them): " + "; ".join(
        f"{where} ({n} lines)" for where, n in offenders)


def test_the_check_sees_a_long_function(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    body = "\n".join(f"        x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    (pkg / "m.py").write_text(f"def short():\n    return 1\n\n\nclass C:\n    @staticmethod\n    def long():\n{body}\n")
    assert long_functions(pkg) == [("pkg/m.py:7 long", MAX_FUNCTION_LINES + 2)]
