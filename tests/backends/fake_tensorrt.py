"""A fake TensorRT runtime for the tests of our engine session and runner where no runtime can run (TensorRT 10/11
cannot be installed here; TensorRT-RTX's runtime refuses every GPU the project has). NOT TensorRT.

The "engine" is an ONNX graph (the bytes the builder would have serialized: the prepared graph), run by ONNX
Runtime with every intermediate tensor exposed. It keeps TensorRT's runtime protocol, in host memory: inputs are
read from the addresses `set_tensor_address` bound, outputs written to theirs, and each unfused tensor is handed to
the debug listener (`process_debug_tensor(addr, TensorLocation.HOST, type, shape, name, stream)`) once the debug
state of unfused tensors is on — so our session's shapes, bindings, dtype map and listener run for real; the
kernels, fusion and device memory are not TensorRT's. `fused` names tensors the fake engine keeps to itself (as
TensorRT's fusion does).
"""

from __future__ import annotations

import ctypes
import enum
import json
from types import SimpleNamespace

import numpy as np
import onnx
from onnx import helper

from cp_debug.backends.ort.ort_runner import exact_int8
from cp_debug.determinism import Determinism

_DTYPES = {np.dtype(np.float32): "FLOAT", np.dtype(np.float16): "HALF", np.dtype(np.int8): "INT8",
           np.dtype(np.int32): "INT32", np.dtype(np.int64): "INT64", np.dtype(np.bool_): "BOOL",
           np.dtype(np.uint8): "UINT8"}


class DataType(enum.Enum):
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4
    UINT8 = 5
    INT64 = 7
    BF16 = 8


class TensorIOMode(enum.Enum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class TensorLocation(enum.Enum):
    DEVICE = 0
    HOST = 1


class ILogger:
    def __init__(self):
        pass


class IDebugListener:
    def __init__(self):
        pass


def _session_options():
    """OrtRunner's: the determinism switch's options, exact INT8 products on CPUs without VNNI."""
    so = Determinism().ort_session_options()
    exact_int8(so)
    return so


class _Engine:
    """An ONNX graph served as an engine: its inputs and outputs are the I/O tensors, every other tensor a debug
    tensor unless `fused`."""

    def __init__(self, fake: "FakeTensorRt", model: onnx.ModelProto):
        import onnxruntime as ort

        self.fake, self.model = fake, model
        outputs = [o.name for o in model.graph.output]
        constant = {i.name for i in model.graph.initializer}
        for n in model.graph.node:  # folded by any engine (a weight's DequantizeLinear): never a debug tensor
            if n.op_type == "Constant" or (n.input and all(x in constant for x in n.input if x)):
                constant.update(n.output)
        inner = [t for n in model.graph.node for t in n.output if t and t not in outputs and t not in constant]
        exposed = onnx.ModelProto()
        exposed.CopyFrom(model)
        have = {o.name for o in exposed.graph.output}
        for name in inner:
            if name not in have:
                exposed.graph.output.append(helper.make_empty_tensor_value_info(name))
        self.inner = [n for n in inner if n not in fake.fused]
        # The engine's own outputs come from a session on the graph as built, with OrtRunner's session options: an
        # ONNX Runtime that must also return every inner tensor fuses less (on AMX, one Q/DQ group of the tests'
        # INT8 net then runs in float and one output element moves by an INT8 step), and the outputs of the stand-in
        # engine are to be what `ort-*` computes on any CPU. The inner tensors, for the debug listener, come from a
        # second session with all of them exposed.
        self.io_sess = ort.InferenceSession(model.SerializeToString(), _session_options(),
                                            providers=["CPUExecutionProvider"])
        self.sess = ort.InferenceSession(exposed.SerializeToString(), _session_options(),
                                         providers=["CPUExecutionProvider"])
        self.inputs = {i.name: i for i in self.sess.get_inputs()}
        self.outputs = outputs

    # the ICudaEngine calls our session makes
    @property
    def num_io_tensors(self) -> int:
        return len(self.inputs) + len(self.outputs)

    def get_tensor_name(self, i: int) -> str:
        return (list(self.inputs) + self.outputs)[i]

    def get_tensor_mode(self, name: str):
        return TensorIOMode.INPUT if name in self.inputs else TensorIOMode.OUTPUT

    def get_tensor_dtype(self, name: str):
        t = next((v for v in list(self.model.graph.input) + list(self.model.graph.output) if v.name == name))
        return getattr(DataType, _DTYPES[np.dtype(helper.tensor_dtype_to_np_dtype(t.type.tensor_type.elem_type))])

    def get_tensor_shape(self, name: str):
        t = next((v for v in list(self.model.graph.input) + list(self.model.graph.output) if v.name == name))
        return tuple(d.dim_value if d.HasField("dim_value") else -1 for d in t.type.tensor_type.shape.dim)

    def create_execution_context(self, *args):
        return _Context(self)

    def create_runtime_config(self):
        return _RuntimeConfig()

    def create_engine_inspector(self):
        layers = [{"Name": n.name, "Outputs": [{"Format/Datatype": "Row major linear FP32 format"}]}
                  for n in self.model.graph.node]
        return SimpleNamespace(get_engine_information=lambda fmt: json.dumps({"Layers": layers}))


class _RuntimeCache:
    """TensorRT-RTX's runtime cache, faked: it remembers what it was given and counts the runs it saw."""

    def __init__(self):
        self.blob = b"fake runtime cache:0"

    def deserialize(self, blob) -> bool:
        self.blob = bytes(blob)
        return True

    def serialize(self) -> bytes:
        head, _, runs = self.blob.rpartition(b":")
        self.blob = head + b":" + str(int(runs) + 1).encode()
        return self.blob


class _RuntimeConfig:
    def __init__(self):
        self.cache = None

    def create_runtime_cache(self):
        return _RuntimeCache()

    def set_runtime_cache(self, cache) -> bool:
        self.cache = cache
        return True


class _Context:
    def __init__(self, engine: _Engine):
        self.engine = engine
        self.shapes: dict[str, tuple] = {}
        self.addresses: dict[str, int] = {}
        self.listener = None
        self.unfused_tensors_debug_state = False
        self._values: dict | None = None

    def set_input_shape(self, name: str, shape) -> bool:
        self.shapes[name] = tuple(shape)
        self._values = None
        return True

    def set_tensor_address(self, name: str, address: int) -> bool:
        self.addresses[name] = int(address)
        self._values = None if name in self.engine.inputs else self._values
        return True

    def set_debug_listener(self, listener) -> bool:
        self.listener = listener
        return True

    def _feed(self) -> dict[str, np.ndarray]:
        feed = {}
        for name in self.engine.inputs:
            dtype = np.dtype(helper.tensor_dtype_to_np_dtype(
                next(i for i in self.engine.model.graph.input if i.name == name).type.tensor_type.elem_type))
            arr = np.empty(self.shapes[name], dtype=dtype)
            ctypes.memmove(arr.ctypes.data, self.addresses[name], arr.nbytes)
            feed[name] = arr
        return feed

    def _run(self) -> dict[str, np.ndarray]:
        if self._values is None:
            feed = self._feed()
            names = [o.name for o in self.engine.sess.get_outputs()]
            self._values = dict(zip(names, self.engine.sess.run(names, feed)))
            self._values.update(zip(self.engine.outputs, self.engine.io_sess.run(self.engine.outputs, feed)))
        return self._values

    def get_tensor_shape(self, name: str):
        return self._run()[name].shape if name not in self.engine.inputs else self.shapes[name]

    def execute_async_v3(self, stream: int) -> bool:
        if self.engine.fake.fail_run:
            return False
        values = self._run()
        for name in self.engine.outputs:
            arr = np.ascontiguousarray(values[name])
            ctypes.memmove(self.addresses[name], arr.ctypes.data, arr.nbytes)
        if self.listener is not None and self.unfused_tensors_debug_state:
            for name in self.engine.inner:
                arr = np.ascontiguousarray(values[name])
                kind = getattr(DataType, _DTYPES.get(arr.dtype, "BF16"))
                self.listener.process_debug_tensor(arr.ctypes.data, TensorLocation.HOST, kind, arr.shape, name,
                                                   stream)
        return True


class _Runtime:
    def __init__(self, fake: "FakeTensorRt", logger):
        self.fake, self.logger = fake, logger

    def deserialize_cuda_engine(self, data: bytes):
        if self.fake.refuse:  # as TensorRT says why: through the logger it was given
            self.logger.log(_Severity("ERROR"), self.fake.refuse)
            return None
        return _Engine(self.fake, onnx.load_from_string(bytes(data)))


class _Severity:
    def __init__(self, name: str):
        self.name = name

    def __str__(self) -> str:
        return f"Severity.{self.name}"


class FakeTensorRt:
    """The module a `TensorRtLibrary` holds, faked: `refuse` (a message) makes engines fail to load, `fused` keeps
    tensors from the listener, `fail_run` makes execute_async_v3 return False."""

    DataType, TensorIOMode, TensorLocation = DataType, TensorIOMode, TensorLocation
    ILogger, IDebugListener = ILogger, IDebugListener
    LayerInformationFormat = SimpleNamespace(JSON="json")

    def __init__(self, version: str = "1.7.1.116", *, refuse: str | None = None, fused=(), fail_run: bool = False):
        self.__version__ = version
        self.refuse, self.fused, self.fail_run = refuse, set(fused), fail_run

    def Runtime(self, logger):  # noqa: N802 - TensorRT's name
        return _Runtime(self, logger)


def install(monkeypatch, framework: str = "trt-rtx", version: str = "1.7.1.116", **kwargs) -> FakeTensorRt:
    """Make `load_library(framework)` give the fake, the builder serialize the prepared graph as the "engine", and
    the session's buffers host memory. Returns the fake (set `refuse`, `fused`, `fail_run` on it)."""
    from cp_debug.backends.trt import trt_build, trt_engine, trt_library
    from cp_debug.backends.trt.trt_build import BuildFacts

    fake = FakeTensorRt(version, **kwargs)
    lib = trt_library.TensorRtLibrary(framework, fake, version)
    real_load = trt_library.load_library
    monkeypatch.setattr(trt_library, "load_library", lambda fw: lib if fw == framework else real_load(fw))

    def build(lib_, model_bytes, plan, profile, *, probes=(), marked=(), workspace=None, timing_cache=None,
              what="the model"):
        fake.built_plans.append(plan)
        facts = BuildFacts(f"{lib_.name} {lib_.version_text}", 0, len(probes), len(probes), plan.probes, (), 0.0,
                           len(model_bytes))
        return model_bytes, facts, None

    fake.built_plans = []
    monkeypatch.setattr(trt_build, "build_engine", build)
    real_buffers = trt_engine.TorchBuffers
    monkeypatch.setattr(trt_engine, "TorchBuffers", lambda device="cuda": real_buffers("cpu"))
    return fake
