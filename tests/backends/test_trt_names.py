"""Every TensorRT name our runner and the polygraphy code it calls use exists in the TensorRT bindings of each
version where our build plan uses it — checked offline, by name only, against the lists `benchmarks/trt_names.py`
read out of the `tensorrt-cu12-bindings` wheels (10.0.1, 10.8, 10.16, 11.0, 11.4; never imported).

What this is and is not: a name check. It says the attribute exists in that version's extension module (a flat list:
`BuilderFlag.FP16` needs `BuilderFlag` and `FP16` to be listed, not `FP16` inside `BuilderFlag`; a name that ends a
longer string the linker merged counts as present). It does not run TensorRT.

Names are collected by AST: ours from `trt_runner.py` (`trt.X.Y` chains and methods called on engine objects);
polygraphy's from the functions of its TensorRT backend we reach (listed below from reading them; module-level
helpers they call are followed), each with its guard: under a version check (polygraphy's own choice per version,
recorded, not required), inside `try/except AttributeError` / `hasattr` / `suppress(AttributeError)` (tolerated
where absent, recorded), under an option (required only where our plan passes that option), or unguarded (required).
"""

from __future__ import annotations

import ast
import gzip
from dataclasses import dataclass
from pathlib import Path

import pytest

import cp_debug.backends.trt_runner as trt_runner_module

DATA = Path(__file__).resolve().parents[1] / "data" / "trt_names"
VERSIONS = {"10.0.1": (10, 0), "10.8.0.43": (10, 8), "10.16.1.11": (10, 16), "11.0.0.114": (11, 0),
            "11.4.0.106": (11, 4)}
RECEIVERS = {"builder", "network", "config", "parser", "runtime", "engine", "context", "inspector", "trt_profile",
             "timing_cache", "inp", "layer", "tensor"}  # not `profile`: polygraphy's Profile, and ours

# The polygraphy functions our runner reaches (file → qualified names), read from polygraphy 0.53.6.
POLYGRAPHY_PATHS = {
    "loader.py": ["CreateNetwork.__init__", "CreateNetwork.call_impl", "BaseNetworkFromOnnx.__init__",
                  "BaseNetworkFromOnnx.call_impl", "NetworkFromOnnxBytes.call_impl", "PostprocessNetwork.call_impl",
                  "ModifyNetworkOutputs._apply", "EngineBytesFromNetwork.call_impl", "EngineFromBytes.__init__",
                  "EngineFromBytes.call_impl"],
    "config.py": ["_CreateConfigCommon.__init__", "_CreateConfigCommon.call_impl", "CreateConfig.__init__",
                  "CreateConfig._validator", "CreateConfig._configure_flags", "CreateConfig.call_impl"],
    "runner.py": ["_make_debug_listener", "_make_output_allocator", "_get_array_on_cpu", "TrtRunner.__init__",
                  "TrtRunner.activate_impl", "TrtRunner.set_profile", "TrtRunner.set_debug_listener",
                  "TrtRunner.get_input_metadata_impl", "TrtRunner._infer_impl", "TrtRunner.infer_impl",
                  "TrtRunner.deactivate_impl", "TrtRunner._set_weight_streaming_budget"],
    "profile.py": ["Profile.add", "Profile.fill_defaults", "Profile.to_trt"],
}
# Options polygraphy tests (`if self.X:`), and the TensorRT versions where our plan sets them (None: every version;
# absent here: never set by us). `marked`: ModifyNetworkOutputs, the probes-as-outputs fallback below 10.12.
OPTIONS = {
    "tf32": None, "profiles": None, "profiling_verbosity": None, "memory_pool_limits": None,
    "timing_cache_path": None, "strongly_typed": None,
    "fp16": lambda v: v < (11, 0), "bf16": lambda v: v < (11, 0),
    "mark_unfused_tensors_as_debug_tensors": lambda v: v >= (10, 12),
}
ONLY_BELOW_10_12 = {"ModifyNetworkOutputs._apply"}


@dataclass(frozen=True)
class Use:
    name: str
    where: str  # file:function
    guard: str  # none | version | attr | option:<name>[&<name>…]


def _names(path: Path) -> set[str]:
    with gzip.open(path, "rt") as f:
        return {line.strip() for line in f if line.strip() and not line.startswith("#")}


@pytest.fixture(scope="module")
def bindings() -> dict[str, set[str]]:
    found = {p.name.removesuffix(".txt.gz"): _names(p) for p in DATA.glob("*.txt.gz")}
    assert set(found) == set(VERSIONS), "tests/data/trt_names: run benchmarks/trt_names.py"
    return found


def present(name: str, names: set[str]) -> bool:
    return name in names or any(n.endswith(name) for n in names)


# -- collecting by AST -------------------------------------------------------------------------------------------
def _chain(node: ast.AST) -> list[str] | None:
    """`trt.A.B` → ["A", "B"]; None where the chain does not start at the name `trt`."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return parts[::-1] if isinstance(node, ast.Name) and node.id == "trt" and parts else None


def _receiver_method(node: ast.Attribute, receivers=RECEIVERS) -> str | None:
    """`network.mark_debug` / `self.context.set_input_shape` → the attribute, where the receiver is a TensorRT
    object by its name."""
    v = node.value
    if isinstance(v, ast.Name) and v.id in receivers:
        return node.attr
    if isinstance(v, ast.Attribute) and isinstance(v.value, ast.Name) and v.value.id == "self" and v.attr in receivers:
        return node.attr
    return None


def _guard_of(test: ast.AST) -> str | None:
    text = ast.unparse(test)
    if "version(" in text or "USE_TENSORRT_RTX" in text:
        return "version"
    if "hasattr(" in text:
        return "attr"
    opts = [n.attr for n in ast.walk(test) if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
            and n.value.id == "self"]
    return f"option:{opts[0]}" if opts else None


def _catches_attribute_error(node: ast.Try) -> bool:
    return any(h.type is None or "AttributeError" in ast.unparse(h.type) for h in node.handlers)


class _Collector(ast.NodeVisitor):
    def __init__(self, where: str, module_defs: dict[str, ast.FunctionDef], receivers=RECEIVERS):
        self.where, self.defs, self.guards, self.receivers = where, module_defs, ["none"], receivers
        self.uses: list[Use] = []
        self.calls: set[str] = set()

    def _add(self, name: str) -> None:
        guards = [g for g in self.guards if g != "none"]
        options = [g.split(":", 1)[1] for g in guards if g.startswith("option:")]
        guard = ("version" if "version" in guards else "attr" if "attr" in guards
                 else "option:" + "&".join(options) if options else "none")
        self.uses.append(Use(name, self.where, guard))

    def _visit_guarded(self, guard: str | None, body, orelse=()) -> None:
        self.guards.append(guard or "none")
        for n in body:
            self.visit(n)
        self.guards.pop()
        for n in orelse:
            self.visit(n)

    def visit_If(self, node: ast.If) -> None:
        self.visit(node.test)
        self._visit_guarded(_guard_of(node.test), node.body, node.orelse)

    def visit_Try(self, node: ast.Try) -> None:
        tolerant = _catches_attribute_error(node)
        self._visit_guarded("attr" if tolerant else None, node.body)
        for h in node.handlers:  # an AttributeError handler is the fallback where a name is absent (old TensorRT)
            self._visit_guarded("attr" if tolerant else None, h.body)
        for n in node.orelse + node.finalbody:
            self.visit(n)

    def visit_With(self, node: ast.With) -> None:
        suppress = any("suppress(AttributeError)" in ast.unparse(i.context_expr) for i in node.items)
        self._visit_guarded("attr" if suppress else None, node.body)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        chain = _chain(node)
        if chain:
            for part in chain:
                if not part.startswith("__"):
                    self._add(part)
            return
        method = _receiver_method(node, self.receivers)
        if method:
            self._add(method)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        f = node.func
        text = ast.unparse(f)
        if text.endswith("try_set_flag") and node.args and isinstance(node.args[0], ast.Constant):
            self._add("BuilderFlag")
            self._add(str(node.args[0].value))
        if "try_getattr" in text:  # util.try_getattr(trt, "fp8"): absent is None, by design
            self.guards.append("attr")
            self.generic_visit(node)
            self.guards.pop()
            return
        name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None
        if name in self.defs:
            self.calls.add(name)
        self.generic_visit(node)


def _functions(tree: ast.Module) -> dict[str, ast.FunctionDef]:
    """Qualified name → function, for module-level functions and methods of module-level classes."""
    out = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            out[node.name] = node
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    out[f"{node.name}.{item.name}"] = item
    return out


def polygraphy_uses() -> list[Use]:
    """Each TensorRT name the polygraphy functions we reach use, with its guard (module helpers followed)."""
    import polygraphy.backend.trt as pkg

    root = Path(pkg.__file__).parent
    sources = {f: (root / f).read_text() for f in ("loader.py", "config.py", "runner.py", "profile.py", "util.py")}
    trees = {f: ast.parse(text) for f, text in sources.items()}
    funcs = {f: _functions(t) for f, t in trees.items()}
    helpers = {name: ("util.py", fn) for name, fn in funcs["util.py"].items() if "." not in name}
    uses: list[Use] = []
    todo = [(f, q) for f, qs in POLYGRAPHY_PATHS.items() for q in qs]
    seen = set()
    while todo:
        f, q = todo.pop()
        if (f, q) in seen:
            continue
        seen.add((f, q))
        fn = funcs[f][q]
        module_helpers = {n: (f, d) for n, d in funcs[f].items() if "." not in n}
        # `config` is polygraphy's own settings module where a file imports it (`config.USE_TENSORRT_RTX`)
        receivers = RECEIVERS - {"config"} if "from polygraphy import config," in sources[f] else RECEIVERS
        c = _Collector(f"{f}:{q}", {**helpers, **module_helpers}, receivers)
        for stmt in fn.body:
            c.visit(stmt)
        uses += c.uses
        for name in c.calls:
            owner = module_helpers.get(name) or helpers.get(name)
            todo.append((owner[0], name))
    assert seen >= {(f, q) for f, qs in POLYGRAPHY_PATHS.items() for q in qs}
    return uses


def our_uses() -> list[Use]:
    """Our runner's names; our own `if self.x:` options (workspace, …) can be set, so only version and
    AttributeError guards relax them."""
    tree = ast.parse(Path(trt_runner_module.__file__).read_text())
    c = _Collector("trt_runner.py", {})
    c.visit(tree)
    return [Use(u.name, u.where, "none") if u.guard.startswith("option:") else u for u in c.uses]


def required(uses: list[Use], version: tuple[int, int]) -> dict[str, list[str]]:
    """name → where, for the uses our plan reaches on `version` with no tolerance for the name's absence."""
    out: dict[str, list[str]] = {}
    for u in uses:
        if u.guard in ("version", "attr"):
            continue
        if u.guard.startswith("option:"):  # reached where our plan sets every option it sits under
            whens = [OPTIONS.get(o, False) for o in u.guard.split(":", 1)[1].split("&")]
            if any(w is False or (w is not None and not w(version)) for w in whens):
                continue
        if u.where.split(":", 1)[-1] in ONLY_BELOW_10_12 and version >= (10, 12):
            continue
        out.setdefault(u.name, []).append(u.where)
    return out


def missing(uses: list[Use], version_text: str, names: set[str]) -> dict[str, list[str]]:
    return {n: w for n, w in required(uses, VERSIONS[version_text]).items() if not present(n, names)}


# -- the checks --------------------------------------------------------------------------------------------------
def test_the_lists_say_which_wheel_they_were_read_from():
    for path in DATA.glob("*.txt.gz"):
        with gzip.open(path, "rt") as f:
            head = [next(f) for _ in range(3)]
        assert head[0].startswith("# wheel: tensorrt_cu1") and head[0].strip().endswith(".whl")
        assert head[1].startswith("# sha256: ") and len(head[1].split()[-1]) == 64
        assert path.name.removesuffix(".txt.gz") in head[0]


@pytest.mark.parametrize("version", sorted(VERSIONS))
def test_every_name_on_our_path_exists_in_that_version(bindings, version):
    uses = our_uses() + polygraphy_uses()
    assert len({u.name for u in our_uses()}) >= 10  # the collector found our names at all
    assert missing(uses, version, bindings[version]) == {}


def test_the_collectors_see_what_we_know_is_there():
    ours = {u.name for u in our_uses()}
    assert {"ProfilingVerbosity", "DETAILED", "MemoryPoolType", "WORKSPACE", "TensorIOMode", "INPUT",
            "get_tensor_profile_shape", "create_engine_inspector", "LayerInformationFormat"} <= ours
    assert {"MemoryPoolType", "WORKSPACE"} <= set(required(our_uses(), (10, 8)))  # under our `if self.workspace`
    poly = polygraphy_uses()
    by = {(u.name, u.guard) for u in poly}
    assert ("mark_unfused_tensors_as_debug_tensors", "option:mark_unfused_tensors_as_debug_tensors") in by
    assert ("STRONGLY_TYPED", "attr") in by  # inside try/except AttributeError → polygraphy's fail_unavailable
    assert ("FP16", "option:fp16") in by and ("TF32", "option:tf32") in by
    assert ("IDebugListener", "none") in by and ("set_all_tensors_debug_state", "attr") in by
    assert ("create_timing_cache", "attr") in by and ("build_serialized_network", "attr") in by


def test_polygraphy_names_only_under_a_version_check_are_recorded():
    """Names polygraphy touches only under its own version checks: not required of any version, listed here so a
    change in polygraphy shows up."""
    uses = polygraphy_uses()
    versioned = {u.name for u in uses if u.guard == "version"}
    reached = set().union(*(required(uses, v) for v in VERSIONS.values()))
    assert {"PREFER_PRECISION_CONSTRAINTS", "NATIVE_INSTANCENORM"} <= versioned  # below 11.0 (DLA) / parser ≥ 8.6
    assert "PREFER_PRECISION_CONSTRAINTS" not in reached  # and elsewhere only under an option we never pass


def test_the_check_fails_for_a_made_up_name_and_for_flags_tensorrt_11_removed(bindings, monkeypatch):
    made_up = [Use("mark_everything_as_output", "test", "none")]
    for version in VERSIONS:
        assert missing(made_up, version, bindings[version]) == {"mark_everything_as_output": ["test"]}
    fp16_flag = [Use("BuilderFlag", "test", "none"), Use("FP16", "test", "none")]
    assert missing(fp16_flag, "10.16.1.11", bindings["10.16.1.11"]) == {}
    for version in ("11.0.0.114", "11.4.0.106"):
        assert missing(fp16_flag, version, bindings[version]) == {"FP16": ["test"]}
    for removed in ("IInt8Calibrator", "IAlgorithmSelector", "OBEY_PRECISION_CONSTRAINTS", "int8_calibrator"):
        assert present(removed, bindings["10.16.1.11"]) and not present(removed, bindings["11.4.0.106"])
    # debug tensors of every unfused tensor: 10.12 on, and the plan asks for them only there
    assert not present("mark_unfused_tensors_as_debug_tensors", bindings["10.8.0.43"])
    assert all(present("mark_unfused_tensors_as_debug_tensors", bindings[v]) for v in ("10.16.1.11", "11.0.0.114"))
    uses = [Use("mark_unfused_tensors_as_debug_tensors", "x", "option:mark_unfused_tensors_as_debug_tensors")]
    assert missing(uses, "10.8.0.43", bindings["10.8.0.43"]) == {}  # not on the 10.8 path
    monkeypatch.setitem(OPTIONS, "mark_unfused_tensors_as_debug_tensors", None)  # a plan asking on every version
    assert "mark_unfused_tensors_as_debug_tensors" in missing(uses, "10.8.0.43", bindings["10.8.0.43"])
