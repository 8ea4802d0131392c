"""A serialized TensorRT engine run: deserialized, one execution context, its tensors in device buffers, and every
debug tensor handed back by a debug listener — one session for TensorRT 10/11 and TensorRT for RTX.

NEVER RUN ON A REAL TENSORRT RUNTIME HERE: TensorRT 10/11 cannot be installed where cp_debug is built, and
TensorRT-RTX's runtime refuses the GPUs of the project's machines (an H100 is compute capability 9.0; it runs 8.0,
8.6, 8.9 and 12.x). This session is tested against a fake engine (tests/backends/test_trt_engine.py) that drives
the same calls with host memory; on a supported GPU the buffers are torch's CUDA tensors.

What it does (after trtexec's `samples/common/sampleInference.cpp`): the engine is deserialized with a logger that
keeps what the library says (a refusal — another GPU, an old driver — is `EngineRefusedError` with the library's own
line); TensorRT-RTX's runtime cache (the kernels it compiles just in time) is read from and written to the cache
folder; the debug listener is set and the debug state of every unfused tensor turned on
(`unfused_tensors_debug_state`, as trtexec does for `--saveAllDebugTensors`: `setUnfusedTensorsDebugState(true)` in
sampleInference.cpp; polygraphy's runner, 0.49-0.53, sets only `set_all_tensors_debug_state`); per feed, each input's
shape is set and its buffer bound, the outputs' shapes read back and bound, `execute_async_v3` run on the session's
stream, and the outputs and debug tensors copied to the host. A debug tensor of a type numpy has no dtype for (BF16,
FP8, INT4, FP4) is skipped and named in `skipped`.
"""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cp_debug.errors import BackendRuntimeError, BackendUnavailableError

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.backends.trt.trt_library import TensorRtLibrary

# TensorRT's DataType names → numpy; the others (BF16, FP8, INT4, FP4, E8M0) have no numpy dtype here
NUMPY_OF = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32, "INT64": np.int64,
            "BOOL": np.bool_, "UINT8": np.uint8}


class EngineRefusedError(BackendUnavailableError):
    """The library built the engine (its graph parses and builds) but will not run it on this machine: another GPU
    (TensorRT-RTX on compute capability 9.0), no GPU or driver. Exit 3, with the library's own reason (`reason`);
    `library` names it ("TensorRT-RTX 1.7.1.116"); `built` is the build's facts where it was built just now."""

    def __init__(self, message: str, *, library: str = "", reason: str = "", built=None):
        super().__init__(message)
        self.library, self.reason, self.built = library, reason, built


def numpy_dtype(trt_dtype) -> np.dtype | None:
    name = str(trt_dtype).rsplit(".", 1)[-1]
    found = NUMPY_OF.get(name)
    return np.dtype(found) if found is not None else None


class TorchBuffers:
    """Device memory, a stream and copies through torch (a cp_debug dependency already): CUDA tensors on a GPU;
    `device="cpu"` gives host tensors, which the fake engine of the tests reads and writes by address."""

    def __init__(self, device: str = "cuda"):
        import torch

        self.torch, self.device = torch, torch.device(device)
        self.cuda = self.device.type == "cuda"
        self._stream = torch.cuda.Stream(self.device) if self.cuda else None

    @property
    def stream_handle(self) -> int:
        return int(self._stream.cuda_stream) if self._stream is not None else 0

    def upload(self, array: np.ndarray):
        host = self.torch.from_numpy(np.ascontiguousarray(array))
        if not self.cuda:
            return host.clone()
        with self.torch.cuda.stream(self._stream):
            return host.to(self.device, non_blocking=False)

    def empty(self, shape, dtype: np.dtype):
        t = self.torch.from_numpy(np.empty(0, dtype=dtype)).dtype
        return self.torch.empty(tuple(int(d) for d in shape), dtype=t, device=self.device)

    def synchronize(self) -> None:
        if self._stream is not None:
            self._stream.synchronize()

    def to_host(self, value) -> np.ndarray:
        return value.detach().to("cpu").numpy().copy()

    def read(self, address: int, on_host: bool, dtype: np.dtype, shape, stream: int) -> np.ndarray:
        """A copy of the `shape` × `dtype` values at `address` (a debug tensor handed to the listener)."""
        shape = tuple(int(d) for d in shape)
        out = np.empty(shape, dtype=dtype)
        if on_host or not self.cuda:
            ctypes.memmove(out.ctypes.data, int(address), out.nbytes)
            return out
        torch = self.torch
        torch.cuda.ExternalStream(int(stream), device=self.device).synchronize()
        view = torch.as_tensor(_CudaArray(int(address), shape, dtype, int(stream)), device=self.device)
        return view.to("cpu").numpy().copy()


class _CudaArray:
    """Device memory TensorRT owns, seen by torch through the CUDA array interface (no copy)."""

    def __init__(self, address: int, shape: tuple[int, ...], dtype: np.dtype, stream: int):
        self.__cuda_array_interface__ = {"shape": shape, "typestr": np.dtype(dtype).str, "data": (address, True),
                                         "version": 3, "strides": None, "stream": stream or None}


def make_listener(trt, buffers: TorchBuffers):
    """A `trt.IDebugListener` keeping a host copy of each debug tensor TensorRT hands it, by its name."""

    class DebugTensors(trt.IDebugListener):
        def __init__(self):
            trt.IDebugListener.__init__(self)
            self.tensors: dict[str, np.ndarray] = {}
            self.skipped: dict[str, str] = {}

        def process_debug_tensor(self, addr, location, type, shape, name, stream):  # noqa: A002 - TensorRT's names
            dtype = numpy_dtype(type)
            if dtype is None:
                self.skipped[str(name)] = str(type).rsplit(".", 1)[-1]
                return True
            on_host = location == trt.TensorLocation.HOST
            self.tensors[str(name)] = buffers.read(addr, on_host, dtype, tuple(shape), stream)
            return True

    return DebugTensors()


class EngineSession:
    """One engine and one execution context. `open()` deserializes (EngineRefusedError where the library will not
    run it here); `infer(feed)` returns (outputs, debug tensors) as host arrays; `close()` lets go."""

    def __init__(self, lib: "TensorRtLibrary", engine: bytes, *, what: str, debug: bool = False,
                 runtime_cache: Path | None = None, buffers: TorchBuffers | None = None):
        self.lib, self.data, self.what, self.debug = lib, engine, what, debug
        self.runtime_cache = runtime_cache
        self.buffers = buffers
        self.engine = self.context = self.listener = None
        self._cache = None
        self._log = lib.logger()
        self._keep: list[Any] = []  # the runtime and its objects, alive as long as the engine

    def open(self) -> "EngineSession":
        trt = self.lib.module
        runtime = trt.Runtime(self._log.trt_logger)
        engine = runtime.deserialize_cuda_engine(self.data)
        if engine is None:
            library = f"{self.lib.name} {self.lib.version_text}"
            reason = self._log.error_line("the engine did not load")
            raise EngineRefusedError(f"{library} built the engine of {self.what} (it parses and builds) but cannot "
                                     f"run it here: {reason}", library=library, reason=reason)
        self._keep.append(runtime)
        self.engine = engine
        self.context = self._context(engine)
        if self.context is None:
            raise BackendRuntimeError(f"{self.lib.name} cannot make an execution context for {self.what}: "
                                      f"{self._log.error_line('no reason given')}")
        if self.buffers is None:
            self.buffers = TorchBuffers("cuda")
        if self.debug:
            self.listener = make_listener(trt, self.buffers)
            self.context.set_debug_listener(self.listener)
            self.context.unfused_tensors_debug_state = True
        return self

    def _context(self, engine):
        """An execution context; on TensorRT-RTX with its runtime cache (read from `runtime_cache` where kept)."""
        if self.lib.rtx and self.runtime_cache is not None:
            runtime_config = engine.create_runtime_config()
            self._cache = runtime_config.create_runtime_cache()
            if self.runtime_cache.is_file():
                self._cache.deserialize(self.runtime_cache.read_bytes())
            runtime_config.set_runtime_cache(self._cache)
            self._keep.append(runtime_config)
            return engine.create_execution_context(runtime_config)
        return engine.create_execution_context()

    def io(self, inputs: bool = True) -> dict[str, tuple[np.dtype | None, list[int]]]:
        """The engine's inputs (or outputs): name → (numpy dtype, dims, -1 where dynamic)."""
        trt, engine = self.lib.module, self.engine
        mode = trt.TensorIOMode.INPUT if inputs else trt.TensorIOMode.OUTPUT
        out = {}
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            if engine.get_tensor_mode(name) == mode:
                dims = [int(d) for d in engine.get_tensor_shape(name)]
                out[name] = (numpy_dtype(engine.get_tensor_dtype(name)), dims)
        return out

    def infer(self, feed: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """(outputs, debug tensors) of one run on `feed` (checked against `io()` by the caller)."""
        ctx, buffers = self.context, self.buffers
        held = []
        for name, array in feed.items():
            if not ctx.set_input_shape(name, tuple(int(d) for d in array.shape)):
                raise BackendRuntimeError(f"{self.lib.name} refused the shape {list(array.shape)} of input {name!r} "
                                          f"of {self.what}: {self._log.error_line('outside its profile')}")
            buf = buffers.upload(array)
            held.append(buf)
            ctx.set_tensor_address(name, int(buf.data_ptr()))
        outputs = {}
        for name, (dtype, _) in self.io(inputs=False).items():
            shape = tuple(int(d) for d in ctx.get_tensor_shape(name))
            if dtype is None or any(d < 0 for d in shape):
                why = "a type numpy cannot hold" if dtype is None else f"a shape known only while it runs {list(shape)}"
                raise BackendRuntimeError(f"output {name!r} of {self.what} has {why}: not supported by this runner")
            buf = buffers.empty(shape, dtype)
            outputs[name] = buf
            ctx.set_tensor_address(name, int(buf.data_ptr()))
        if self.listener is not None:
            self.listener.tensors.clear()
            self.listener.skipped.clear()
        if not ctx.execute_async_v3(buffers.stream_handle):
            raise BackendRuntimeError(f"{self.lib.name} failed running {self.what}: "
                                      f"{self._log.error_line('execute_async_v3 returned false')}")
        buffers.synchronize()
        host = {name: buffers.to_host(buf) for name, buf in outputs.items()}
        debug = dict(self.listener.tensors) if self.listener is not None else {}
        del held
        return host, debug

    @property
    def skipped(self) -> dict[str, str]:
        """Debug tensors of the last run not copied (name → their TensorRT type, which numpy cannot hold)."""
        return dict(self.listener.skipped) if self.listener is not None else {}

    def warnings(self) -> list[str]:
        return list(dict.fromkeys(self._log.warnings()))

    def save_runtime_cache(self) -> bytes | None:
        """TensorRT-RTX's runtime cache as it stands (the kernels compiled so far), to keep; None without one."""
        return bytes(self._cache.serialize()) if self._cache is not None else None

    def close(self) -> None:
        self.context = self.engine = self.listener = None
        self._cache = None
        self._keep.clear()
