"""Backends (floor 6): one runner per framework behind one contract, picked by a spec such as `ort-cpu-int8`.

Backend specs, the one `--backends` parser with a rule per command (`spec.py`: `parse_backends`, `BackendsRule`) and
what each framework's runner can do beyond the contract (`Capability`; callers ask `spec.can` / `runner.can`, never
the framework's name), the runner contract (`base.py`), the factory and availability (`factory.py`: `make_runner`,
`check_available`, `availability`, `runs_here`), thin runners, one room a framework — torch (`pytorch/`), ONNX
Runtime (`ort/`), TensorRT 10/11 and TensorRT for RTX (`trt/`) — and a runner that reads results instead (`kit/`: a
kit's results brought back from the target, `trt-*@KIT`), over one graph loader (`graph_loader.py`: precision
transform, probes exposed or only looked up, missing probes; the graph preparation the ONNX Runtime and TensorRT
runners share) and one feed check (`feed.py`). Each room's docstring says what its modules do.

The runner contract: `factory.make_runner(spec, …)` → `Runner`: `activate` / `infer(feed)` → `{name: array}` /
`deactivate`; a runner declaring `Capability.DEVICE_TENSORS` is also fed and read through `infer_device` (torch
tensors on the device: the resident pipeline, `recipes/centerpoint/__init__.py`). `graph_loader.PrepareGraph`:
precision transform + exposed probes + missing probes (ORT and TensorRT).

The `--backends` text, package by package (`cpdebug bisect --backends torch,trt-rtx-fp16`): `cli/bisect_cmd.py` hands
the text to `backends/spec.parse_backends(text, rule=NOISE_CHECK)` → `[(label, BackendSpec)]` (`trt-rtx-fp16` →
framework `trt-rtx`, device `cuda`, precision `fp16`; a spec outside its framework's table is one line there) →
`bisect/engine.BisectEngine` asks `backends/factory.check_available(spec)` of each (the library imports,
`trt_plan.plan_build` holds) → per stage, `bisect/stages/stage_runner.make_stage_runner` →
`backends/factory.make_runner(spec, onnx_model=…, extra_outputs=probes, …)` → a runner by framework:
`pytorch/torch_runner.TorchRunner`, `ort/ort_runner.OrtRunner`, `trt/trt_runner.TrtRunner` (trt-* and trt-rtx-*:
`trt_library.load_library` → `trt_plan.plan_build` → `graph_loader.PrepareGraph` → `trt_build.build_engine` →
`trt_engine.EngineSession`), `kit/kit_runner.KitRunner` (`trt-*@KIT`) → `infer(feed)` → the probes compared
(`bisect/stages/record.py` → `compare/diff.py`, `compare/noise.py`) → `bisect/verdict.py` → `BisectReport`
(`result.py`) → `report/` (table, JSON, HTML). The same spec reaches CenterPoint's sweep lanes
(`recipes/centerpoint/sweep/lanes.make_lane`), its eval pipeline (`recipes/centerpoint/eval/backend_pipeline.py`),
`fix/run.py` and `bench/` through the same `make_runner`.

Nothing heavy is imported here: torch, onnxruntime and tensorrt load when a runner activates or when availability is
checked.
"""

from __future__ import annotations

from cp_debug.backends.base import PrecisionReport, Runner
from cp_debug.backends.factory import all_specs, availability, check_available, make_runner
from cp_debug.backends.spec import BackendSpec, Capability

__all__ = ["BackendSpec", "Capability", "PrecisionReport", "Runner", "all_specs", "availability", "check_available",
           "make_runner"]
