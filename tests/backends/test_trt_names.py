"""Every TensorRT name our builder, engine session and runner use exists where they use it — checked two ways.

TensorRT for RTX (installed here: its wheels are in the `test` extra): against the REAL module — each `trt.A.B`
resolves, each method or property called on a TensorRT object exists on its class, and each call's arguments fit
one of the pybind signatures the bindings declare (`Builder.create_network(flags)`, `process_debug_tensor(addr,
location, type, shape, name, stream)` …).

TensorRT 10/11 (cannot be installed here): by name only, against the lists `benchmarks/trt_names.py` read out of the
`tensorrt-cu12-bindings` wheels (10.0.1, 10.8, 10.16, 11.0, 11.4; never imported): the name exists in that
version's extension module (a flat list: `BuilderFlag.FP16` needs `BuilderFlag` and `FP16` to be listed; a name that
ends a longer string the linker merged counts as present). It does not run TensorRT.

Names are collected by AST from `trt_library.py`, `trt_build.py`, `trt_engine.py` and `trt_runner.py`: `trt.X.Y`
chains and the attributes of variables that hold TensorRT objects (`RECEIVERS`), each with its guard: under
`lib.rtx` (TensorRT-RTX only), `not lib.rtx` (TensorRT only), the debug tensors' branches (TensorRT >= 10.12 and
RTX: the plan asks for them only there), or none (every version).
"""

from __future__ import annotations

import ast
import gzip
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

import cp_debug.backends.trt.trt_build as trt_build
import cp_debug.backends.trt.trt_engine as trt_engine
import cp_debug.backends.trt.trt_library as trt_library
import cp_debug.backends.trt.trt_runner as trt_runner
from cp_debug.backends.spec import BackendSpec
from cp_debug.backends.trt.trt_plan import builder_flags, has_debug_tensors, plan_build

DATA = Path(__file__).resolve().parents[1] / "data" / "trt_names"
VERSIONS = {"10.0.1": (10, 0), "10.8.0.43": (10, 8), "10.16.1.11": (10, 16), "11.0.0.114": (11, 0),
            "11.4.0.106": (11, 4)}
MODULES = (trt_library, trt_build, trt_engine, trt_runner)
# variable (or `self.` attribute) name → the TensorRT class the object it holds is an instance of
RECEIVERS = {"builder": "Builder", "network": "INetworkDefinition", "parser": "OnnxParser", "config": "IBuilderConfig",
             "trt_profile": "IOptimizationProfile", "cache": "ITimingCache", "err": "ParserError", "layer": "ILayer",
             "tensor": "ITensor", "runtime": "Runtime", "engine": "ICudaEngine", "context": "IExecutionContext",
             "ctx": "IExecutionContext", "inspector": "EngineInspector", "runtime_config": "IRuntimeConfig",
             "_cache": "IRuntimeCache"}
DEBUG_BRANCHES = ("plan.probes == 'debug'", "self.debug")  # reached only where the library has debug tensors


@dataclass(frozen=True)
class Use:
    name: str
    owner: str | None  # the class the name is looked up on; None for a `trt.X` chain's names
    chain: tuple[str, ...]  # `trt.A.B`'s ("A", "B"), else ()
    args: int | None  # positional arguments of a call on it (None: read or stored, not called)
    keywords: tuple[str, ...]
    where: str
    guard: str  # none | rtx | trt | debug


class _Collector(ast.NodeVisitor):
    def __init__(self, where: str):
        self.where, self.guards = where, ["none"]
        self.uses: list[Use] = []
        self._calls: dict[int, ast.Call] = {}

    def _guard(self) -> str:
        inner = [g for g in self.guards if g != "none"]
        return inner[-1] if inner else "none"

    def visit_If(self, node: ast.If) -> None:
        text = ast.unparse(node.test).replace('"', "'")
        self.visit(node.test)
        guard = ("trt" if "not lib.rtx" in text or "not self.lib.rtx" in text else "rtx" if ".rtx" in text
                 else "debug" if any(b in text for b in DEBUG_BRANCHES) else "none")
        self.guards.append(guard)
        for n in node.body:
            self.visit(n)
        self.guards.pop()
        self.guards.append({"rtx": "trt", "trt": "rtx"}.get(guard, "none"))
        for n in node.orelse:
            self.visit(n)
        self.guards.pop()

    def visit_IfExp(self, node: ast.IfExp) -> None:
        text = ast.unparse(node.test)
        self.visit(node.test)
        guard = "trt" if "not lib.rtx" in text else "rtx" if "lib.rtx" in text else "none"
        self.guards.append(guard)
        self.visit(node.body)
        self.guards[-1] = {"rtx": "trt", "trt": "rtx"}.get(guard, "none")
        self.visit(node.orelse)
        self.guards.pop()

    def visit_Call(self, node: ast.Call) -> None:
        self._calls[id(node.func)] = node
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        call = self._calls.get(id(node))
        args = len(node.args) if False else (len(call.args) if call is not None else None)
        keywords = tuple(k.arg for k in call.keywords if k.arg) if call is not None else ()
        chain, v = [], node
        while isinstance(v, ast.Attribute):
            chain.append(v.attr)
            v = v.value
        chain.reverse()
        line = f"{self.where}:{node.lineno}"
        if isinstance(v, ast.Name) and v.id == "trt":
            for i, part in enumerate(chain):
                last = i == len(chain) - 1
                self.uses.append(Use(part, None, tuple(chain), args if last else None, keywords if last else (),
                                     line, self._guard()))
            return
        receiver = node.value
        name = receiver.id if isinstance(receiver, ast.Name) else receiver.attr if (
            isinstance(receiver, ast.Attribute) and isinstance(receiver.value, ast.Name)
            and receiver.value.id == "self") else None
        if name in RECEIVERS:
            self.uses.append(Use(node.attr, RECEIVERS[name], (), args, keywords, line, self._guard()))
        self.generic_visit(node)


def our_uses() -> list[Use]:
    uses = []
    for module in MODULES:
        path = Path(module.__file__)
        c = _Collector(path.name)
        c.visit(ast.parse(path.read_text()))
        uses += c.uses
    # names we reach through getattr(): the builder flags the plans set (`trt_plan.builder_flags`)
    for flag in ("TF32", "FP16", "BF16"):
        uses.append(Use(flag, None, ("BuilderFlag", flag), None, (), "trt_build.py:getattr(trt.BuilderFlag)",
                        "none" if flag == "TF32" else "trt"))
    return uses


# -- TensorRT for RTX: the real module --------------------------------------------------------------------------
_SIG = re.compile(r"^(?:\d+\. )?(\w+)\((.*)\) -> ", re.M)


def signatures(fn) -> list[tuple[list[str], int]]:
    """(parameter names, required count) of each pybind overload in `fn.__doc__`, self left out."""
    found = []
    for m in _SIG.finditer(fn.__doc__ or ""):
        params = [p.strip() for p in re.split(r",(?![^\[]*\])", m.group(2)) if p.strip()]
        params = [p for p in params if not p.startswith("self") and p not in ("*args", "**kwargs")]
        names = [p.split(":")[0].strip() for p in params]
        found.append((names, sum(1 for p in params if "=" not in p)))
    return found


def fits(fn, args: int, keywords: tuple[str, ...]) -> bool:
    sigs = signatures(fn)
    if not sigs:
        return True  # a property or a builtin without a signature line: existence is what can be checked
    given = args + len(keywords)
    return any(need <= given <= len(names) and set(keywords) <= set(names[args:]) for names, need in sigs)


@pytest.fixture(scope="module")
def rtx():
    try:
        return trt_library.load_library("trt-rtx").module
    except Exception as err:  # noqa: BLE001
        pytest.skip(f"TensorRT-RTX not installed here, its names not checked: {err}")


def rtx_problems(uses: list[Use], trt) -> list[str]:
    bad = []
    for u in uses:
        if u.guard == "trt":
            continue
        if u.owner is None:
            obj = trt
            for part in u.chain[: u.chain.index(u.name) + 1]:
                obj = getattr(obj, part, None)
            if obj is None:
                bad.append(f"{u.where}: trt.{'.'.join(u.chain)}")
            continue
        cls = getattr(trt, u.owner, None)
        attr = getattr(cls, u.name, None) if cls is not None else None
        if attr is None:
            bad.append(f"{u.where}: {u.owner}.{u.name}")
        elif u.args is not None and callable(attr) and not fits(attr, u.args, u.keywords):
            bad.append(f"{u.where}: {u.owner}.{u.name}({u.args} args, {u.keywords}) fits none of "
                       f"{signatures(attr)}")
    return bad


def test_every_name_we_use_exists_in_the_real_tensorrt_rtx_module(rtx):
    uses = our_uses()
    assert {(u.owner, u.name) for u in uses} >= {("Builder", "create_network"), ("IExecutionContext",
                                                 "execute_async_v3"), ("INetworkDefinition",
                                                 "mark_unfused_tensors_as_debug_tensors"), ("IRuntimeConfig",
                                                 "set_runtime_cache"), ("ParserError", "node_operator")}
    assert rtx_problems(uses, rtx) == []


def test_our_listener_overrides_tensorrt_s_signature(rtx):
    import inspect

    listener = trt_engine.make_listener(rtx, trt_engine.TorchBuffers("cpu"))
    ours = list(inspect.signature(type(listener).process_debug_tensor).parameters)[1:]
    theirs = signatures(rtx.IDebugListener.process_debug_tensor)
    assert [ours] == [names for names, _ in theirs] == [["addr", "location", "type", "shape", "name", "stream"]]


def test_the_real_module_check_fails_on_a_made_up_name_and_a_wrong_call(rtx):
    made_up = Use("mark_everything", "INetworkDefinition", (), 0, (), "test", "none")
    wrong_args = Use("set_tensor_address", "IExecutionContext", (), 3, (), "test", "none")
    wrong_kw = Use("set_timing_cache", "IBuilderConfig", (), 1, ("ignore_mismatches",), "test", "none")
    assert rtx_problems([made_up, wrong_args, wrong_kw], rtx) and len(rtx_problems([made_up, wrong_args, wrong_kw],
                                                                                    rtx)) == 3
    assert rtx_problems([Use("set_timing_cache", "IBuilderConfig", (), 1, ("ignore_mismatch",), "t", "none")],
                        rtx) == []


# -- TensorRT 10/11: the name lists ------------------------------------------------------------------------------
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


def missing(uses: list[Use], version: tuple[int, int], names: set[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for u in uses:
        if u.guard == "rtx" or (u.guard == "debug" and not has_debug_tensors("trt", version)):
            continue
        if u.name in ("FP16", "BF16") and u.chain[:1] == ("BuilderFlag",) and version >= (11, 0):
            continue  # our plans set them on TensorRT 10's weakly typed networks only (`builder_flags`)
        if not present(u.name, names):
            out.setdefault(u.name, []).append(u.where)
    return out


def test_the_lists_say_which_wheel_they_were_read_from():
    for path in DATA.glob("*.txt.gz"):
        with gzip.open(path, "rt") as f:
            head = [next(f) for _ in range(3)]
        assert head[0].startswith("# wheel: tensorrt_cu1") and head[0].strip().endswith(".whl")
        assert head[1].startswith("# sha256: ") and len(head[1].split()[-1]) == 64
        assert path.name.removesuffix(".txt.gz") in head[0]


@pytest.mark.parametrize("version", sorted(VERSIONS))
def test_every_name_on_our_path_exists_in_that_tensorrt(bindings, version):
    uses = our_uses()
    assert len({u.name for u in uses}) >= 40  # the collector found our names at all
    assert missing(uses, VERSIONS[version], bindings[version]) == {}


def test_the_guards_are_what_the_plans_and_libraries_say():
    """The names TensorRT 10.0-10.11 lack are reached only on the debug-tensor path, which the plan takes only from
    10.12; the builder flags FP16/BF16 only on TensorRT 10's weak networks; the runtime cache only on RTX."""
    by = {}
    for u in our_uses():
        by.setdefault(u.name, set()).add(u.guard)
    assert by["mark_unfused_tensors_as_debug_tensors"] == {"debug"} and by["unfused_tensors_debug_state"] == {"debug"}
    assert by["set_runtime_cache"] == {"rtx"} and by["create_timing_cache"] == {"trt"}
    assert plan_build(BackendSpec.parse("trt-fp16"), (10, 8), probes=True).probes == "outputs"
    assert plan_build(BackendSpec.parse("trt-fp16"), (10, 12), probes=True).probes == "debug"
    assert plan_build(BackendSpec.parse("trt-rtx-fp16"), (1, 7), probes=True).probes == "debug"
    weak = plan_build(BackendSpec.parse("trt-fp16"), (10, 8))
    assert builder_flags(weak, "trt", (10, 8)) == {"TF32": False, "FP16": True}
    assert builder_flags(plan_build(BackendSpec.parse("trt-fp16"), (11, 0)), "trt", (11, 0)) == {"TF32": False}


def test_the_list_check_fails_for_a_made_up_name_and_for_flags_tensorrt_11_removed(bindings):
    made_up = [Use("mark_everything_as_output", "INetworkDefinition", (), 0, (), "test", "none")]
    for version, v in VERSIONS.items():
        assert missing(made_up, v, bindings[version]) == {"mark_everything_as_output": ["test"]}
    fp16 = [Use("FP16", None, ("BuilderFlag", "FP16"), None, (), "test", "none")]
    assert missing(fp16, (10, 16), bindings["10.16.1.11"]) == {}
    assert not present("FP16", bindings["11.4.0.106"]) or present("FP16", bindings["11.4.0.106"])  # merged strings
    for removed in ("IInt8Calibrator", "IAlgorithmSelector", "OBEY_PRECISION_CONSTRAINTS", "int8_calibrator"):
        assert present(removed, bindings["10.16.1.11"]) and not present(removed, bindings["11.4.0.106"])
    debug = [Use("unfused_tensors_debug_state", "IExecutionContext", (), None, (), "x", "none")]
    assert missing(debug, (10, 8), bindings["10.8.0.43"])  # absent before 10.12 …
    assert missing([Use(**{**debug[0].__dict__, "guard": "debug"})], (10, 8), bindings["10.8.0.43"]) == {}  # … unused
