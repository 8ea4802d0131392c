"""House rules ruff and import-linter have no rule for: no function of cp_debug/ is over 120 lines (issue 20 §4),
no module over 450 lines, and no two modules that import each other, at any level (issue 47).

ruff checks complexity (C901), arguments (PLR0913) and statements (PLR0915) from pyproject.toml; a function
can stay under all three and still run for pages (long literals, long calls), so its length is checked here.
import-linter's layers contract keeps the packages' floors; inside one package, or through imports made inside
functions, a circle of modules is still possible, and is found here: every `import` / `from … import` of a
cp_debug module anywhere in a file (in functions and under TYPE_CHECKING too) is an arrow.
"""

from __future__ import annotations

import ast
from pathlib import Path

MAX_FUNCTION_LINES = 120
MAX_MODULE_LINES = 450
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


def long_modules(root: Path, limit: int = MAX_MODULE_LINES) -> list[tuple[str, int]]:
    """(path, lines) of every module under `root` longer than `limit` lines."""
    found = []
    for path in sorted(root.rglob("*.py")):
        n = len(path.read_text(encoding="utf-8").splitlines())
        if n > limit:
            found.append((str(path.relative_to(root.parent)), n))
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module → the modules of `root`'s package it imports anywhere in its file (`a.b` for a/b.py; a package's
    `__init__.py` is the package itself). `from pkg import name` is an arrow to `pkg.name` where that is a module,
    else to `pkg` (its `__init__.py`); the parent packages Python runs on the way are not arrows of the file's own."""
    base = root.name
    modules = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                         for a in node.names]
            else:
                continue
            for name in names:
                if name.split(".")[0] == base and name in modules and name != mod:
                    graph[mod].add(name)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_module_is_over_450_lines():
    offenders = long_modules(PACKAGE)
    assert not offenders, f"modules over {MAX_MODULE_LINES} lines (split them along a seam): " + "; ".join(
        f"{where} ({n} lines)" for where, n in offenders)


def test_no_two_modules_import_each_other_at_any_level():
    found = circles(import_graph(PACKAGE))
    assert not found, "import circles (move what both sides need down into a module of its own): " + "; ".join(
        " <-> ".join(c) for c in found)


def test_the_checks_see_a_long_module_and_a_circle_made_inside_functions(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.sub import b\n" + "x = 1\n" * MAX_MODULE_LINES)
    (pkg / "sub" / "b.py").write_text("def f():\n    from pkg import c\n    return c\n")
    (pkg / "c.py").write_text("def g():\n    import pkg.a\n")
    (pkg / "d.py").write_text("import pkg.c\n")
    assert long_modules(pkg) == [("pkg/a.py", MAX_MODULE_LINES + 1)]
    graph = import_graph(pkg)
    assert graph["pkg.a"] == {"pkg.sub.b"} and graph["pkg.sub.b"] == {"pkg.c"} and graph["pkg.d"] == {"pkg.c"}
    assert circles(graph) == [["pkg.a", "pkg.c", "pkg.sub.b"]]


MAX_FOLDER_MODULES = 30  # issue 108, item 6: a family of modules sharing a prefix is a sub-package


def crowded_folders(root: Path, limit: int = MAX_FOLDER_MODULES) -> list[tuple[str, int]]:
    """(folder, modules) of every folder under `root` holding more than `limit` Python modules of its own."""
    found = []
    for folder in sorted({p.parent for p in root.rglob("*.py")}):
        n = sum(1 for _ in folder.glob("*.py"))
        if n > limit:
            found.append((str(folder.relative_to(root.parent)), n))
    return found


def test_no_folder_holds_more_than_30_modules():
    crowded = crowded_folders(PACKAGE)
    assert not crowded, f"folders over {MAX_FOLDER_MODULES} modules (make a family a sub-package): " + "; ".join(
        f"{where} ({n})" for where, n in crowded)


def framework_branches(root: Path, allowed: str = "backends") -> list[str]:
    """"path:line" of every comparison outside `root`/`allowed` that reads a `.framework` attribute: what a runner
    can do is asked of its spec (`spec.can(Capability…)`, `is_torch`, `is_tensorrt`), never of a framework's name
    (issue 108). A framework's name in a label or a key is no comparison and is not counted."""
    found = []
    for path in sorted(root.rglob("*.py")):
        if path.relative_to(root).parts[0] == allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Compare) and any(
                    isinstance(x, ast.Attribute) and x.attr == "framework" for x in (node.left, *node.comparators)):
                found.append(f"{path.relative_to(root.parent)}:{node.lineno}")
    return found


def test_no_check_outside_backends_branches_on_a_framework_name():
    found = framework_branches(PACKAGE)
    assert not found, "a check by a framework's name (ask the spec what its runner can do): " + ", ".join(found)


def test_the_checks_see_a_crowded_folder_and_a_framework_branch(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "backends").mkdir(parents=True)
    for k in range(31):
        (pkg / f"m{k}.py").write_text("")
    (pkg / "m0.py").write_text("def f(spec):\n    return spec.framework != 'ort'\n")
    (pkg / "backends" / "ok.py").write_text("def f(spec):\n    return spec.framework == 'ort'\n")
    assert crowded_folders(pkg) == [("pkg", 31)]
    assert framework_branches(pkg) == ["pkg/m0.py:2"]


# the one door to an ONNX Runtime session (issue 118), and what may make its own: a user's repro script, written to
# run where cp_debug is not installed
SESSION_DOOR = "ort_sessions.py"
OWN_SESSIONS = ("bugreport/_repro_template.py",)


def sessions_made(root: Path, door: str = SESSION_DOOR, allowed: tuple[str, ...] = OWN_SESSIONS) -> list[str]:
    """"path:line" of every call `InferenceSession(…)` (`ort.InferenceSession`, `onnxruntime.InferenceSession` or a
    name imported) outside the door and the modules allowed; the word in a string or a comment is no call."""
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel == door or rel in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and (getattr(node.func, "attr", None) == "InferenceSession"
                                               or getattr(node.func, "id", None) == "InferenceSession"):
                found.append(f"{path.relative_to(root.parent)}:{node.lineno}")
    return found


def test_no_module_but_the_door_makes_an_onnx_runtime_session():
    found = sessions_made(PACKAGE)
    assert not found, "an ONNX Runtime session made outside cp_debug/ort_sessions.py (ask open_session): " + ", ".join(
        found)


def test_the_check_sees_a_session_made_outside_the_door(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "graph").mkdir(parents=True)
    (pkg / "ort_sessions.py").write_text("import onnxruntime as ort\ndef f(m):\n    return ort.InferenceSession(m)\n")
    (pkg / "graph" / "run.py").write_text("import onnxruntime as ort\ndef f(m):\n    return ort.InferenceSession(m)\n")
    (pkg / "named.py").write_text("from onnxruntime import InferenceSession\nx = InferenceSession('m.onnx')\n")
    (pkg / "said.py").write_text("LINE = 'InferenceSession(m, disabled_optimizers=[...])'  # InferenceSession(\n")
    assert sessions_made(pkg) == ["pkg/graph/run.py:3", "pkg/named.py:2"]


# the one place a bisect chooses a runner standing in for another (issue 118, item 1): no other module of the bisect
# names an ONNX Runtime spec itself
STAND_IN = "bisect/stages/stand_in.py"


def stand_ins_named(root: Path, allowed: str = STAND_IN) -> list[str]:
    """"path:line" of every `BackendSpec("ort", …)` or `BackendSpec.parse("ort…")` under `root`/bisect outside
    `allowed`: an ONNX Runtime spec named by its words, not asked of `stand_in.py`."""
    found = []
    for path in sorted((root / "bisect").rglob("*.py")):
        if path.relative_to(root).as_posix() == allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call) or not node.args or not isinstance(node.args[0], ast.Constant):
                continue
            f, first = node.func, node.args[0].value
            made = isinstance(f, ast.Name) and f.id == "BackendSpec" and first == "ort"
            parsed = (isinstance(f, ast.Attribute) and f.attr == "parse"
                      and getattr(f.value, "id", None) == "BackendSpec" and isinstance(first, str)
                      and first.startswith("ort"))
            if made or parsed:
                found.append(f"{path.relative_to(root.parent)}:{node.lineno}")
    return found


def test_no_bisect_module_but_stand_in_names_an_onnx_runtime_runner():
    found = stand_ins_named(PACKAGE)
    assert not found, ("a runner standing in for another chosen outside cp_debug/bisect/stages/stand_in.py: "
                       + ", ".join(found))


def test_the_check_sees_a_stand_in_named_outside_its_place(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "bisect" / "stages").mkdir(parents=True)
    (pkg / "bisect" / "stages" / "stand_in.py").write_text("x = BackendSpec('ort', 'cpu', 'fp32')\n")
    (pkg / "bisect" / "why.py").write_text("a = BackendSpec.parse('ort-cpu-fp16')\nb = BackendSpec('torch', 'cpu')\n"
                                           "c = BackendSpec('ort', 'cuda', 'fp32')\nd = 'BackendSpec(\"ort\")'\n")
    assert stand_ins_named(pkg) == ["pkg/bisect/why.py:1", "pkg/bisect/why.py:3"]
