"""Backends: one runner per framework behind one contract, picked by a spec such as `ort-cpu-int8`.

`spec.py`: the spec grammar and what each framework's runner can do (`Capability`); `base.py`: the runner contract;
`factory.py`: `make_runner`, `check_available`, `availability`; `graph_loader.py`: the graph preparation the ONNX
Runtime and TensorRT runners share; `feed.py`: their feed check; one module per runner (`torch_runner.py`,
`ort_runner.py`, `trt_runner.py`); `trt_dumps_*.py`: readers of what TensorRT's tools write on the target, one per
producer (`trt_dumps_numpy.py`: trtexec debug-tensor dumps; `trt_dumps_layer_info.py`: layer information;
`trt_dumps_outputs.py`: trtexec outputs; `trt_dumps_polygraphy.py`: polygraphy RunResults; `trt_dumps_files.py`:
what they share), for a `trt-*@KIT` backend.

Nothing heavy is imported here: torch, onnxruntime and tensorrt load when a runner activates or when
availability is checked.
"""

from __future__ import annotations

from cp_debug.backends.base import PrecisionReport, Runner
from cp_debug.backends.factory import all_specs, availability, check_available, make_runner
from cp_debug.backends.spec import BackendSpec, Capability

__all__ = ["BackendSpec", "Capability", "PrecisionReport", "Runner", "all_specs", "availability", "check_available",
           "make_runner"]
