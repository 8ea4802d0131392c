"""cp_debug: find where a deployed model's numbers part from PyTorch's, and why.

Its packages stand on floors (pyproject.toml's layers contract; a line a package: docs/ARCHITECTURE.md), and each
package's `__init__.py` says what it holds.

The house in one picture. Measured on the code as it stands (`tests/test_house_rules.py`'s `import_graph`, every
import anywhere in a file an arrow; the floors are pyproject.toml's layers contract): 37 packages and top-level
modules on 20 floors, 463 modules, 68.2k lines (2026-11-29, issue 108); 232 arrows between packages, none running
back up (`lint-imports`); 0 circles between modules at any level, 0 modules over 450 lines, 0 functions over 120
lines (the house rules' tests fail on any of them). What a newcomer needs first: the commands on top, the values that
travel between floors (typed, each with one home), and the one contract every backend keeps. Arrows point down: a
floor only uses what is below it.

 cli/  cpdebug CMD ──> common/options.py: model options → ModelRecord · --backends → [BackendSpec] (one parser, a
   │                   rule per command) · INT8 calibration options;  app.py: errors mapped once (one line + exit
   │                   code), a closed pipe quiet (common/pipe.py);  entry → server.client.forward, else the command
   │                   here;  common/help.py: every help page's panels, examples, exit codes, metavars, deprecated
   │                   spellings
   ▼
 recipes/  catalog.py: the run's recipe (--recipe, the config's model.type, the model given) → a Recipe, handed down
   │       to every feature below as a field or an argument; each recipe one folder, its plug-ins importing down
   ▼
 server/  cpdebug serve: the resident process (runs the command group serve_cmd hands it; imports no command)
   ▼
 fix/ ─ sweep/ ─ eval/ ─ replay/ ─ bench/ ─ train/               features: each takes Frames and a ModelRecord
   │       │        │
   │       │        └─ the recipe's pipeline per backend (its FrameModel, or its `eval` plug-in)
   │       └─ FrameResult per frame (sweep/records.py; its status one of the Outcome words), BisectReport per
   │          worst frame (typed until sweep.json), FrameFailure; any model's samples: samples/ (sets, judge, tasks)
   ▼
 bisect/  BisectEngine(Subject, [BackendSpec]) → BisectReport (model: ModelRecord; facts: what ran, ModelFacts)
          cures/search.py, window_search.py: strategies (KeepFp32Search; the windows') ─ run_search(strategy,
          judge) → Trace of TraceSteps, each with its search's typed figures; used by keep-fp32, sensitivity
          --search, fix, the bug-report windows
   ▼
 backends/  spec.py: BackendSpec (+ Capability: what a runner can do beyond the contract)
            factory.make_runner(spec, …) → Runner: activate / infer(feed) → {name: array} / deactivate
            graph_loader.PrepareGraph: precision transform + exposed probes + missing probes (ORT and TensorRT)
            ort/ort_runner → ort/ort_session (one session + its graph facts); ort/ort_kept: in `cpdebug serve`, a
            bisect's runners' sessions (CPU and CUDA) kept for the next command under a key of what made them, with
            what they said; CUDA arenas given back once the server idles (server/resident.Server's `idle` step)
            trt/: trt_library → trt_plan → trt_build → trt_engine: one builder and session for TensorRT and
            TensorRT-RTX
 probes/    module ↔ ONNX tensor names (scope names, or graph structure for a foreign file); node_names.py: any
            printed name → node names
   ▼
 data/     frames.py: Frame (token + source: held-out seed, point file + sweeps, info entry, bag message)
           .load(cfg) → Scan (points + GroundTruth);  held_out(n, first) · HeldOutSet · calibration(cfg, …)
           point_files.py / pcd.py / infos.py / rosbag.py: the readers
 quant/    INT8 blocks; quantizer_state / only_quantized / without_quantizers restore what they found
   ▼
 models/centerpoint/  the network; config.py: CenterPointConfig alone; presets.py: the shipped configs/*.py
                      (one home of the presets); config_file.py: a user's AWML config; config_yaml.py: an
                      autoware-ml YAML config (autoware_ml_names.py: its checkpoint keys and module scopes);
                      source.py: load_model (a ModelRecord's weights)
 lidar/    what the LiDAR recipes share: points, voxelize, synthetic scans, Detections, compare_detections,
           LidarConfig, ModelRecord (the model a run names)
 precision/ export/ graph/ compare/ (noise.py: Outcome, the three words) determinism/ files (the one JSON writer) /
 half / parallel / errors

The library (docs/python-api.md; `api/library.py`): `cp_debug.bisect(model, inputs, "torch,ort-cpu-fp16", atol=...)`
returns a `Report`; `cp_debug.assert_within_precision(model, inputs, "ort-cpu-fp16")` gates a test; a failure to run
is a `cp_debug.CpDebugError`. Importing cp_debug imports none of torch, onnxruntime or pandas.
"""

import types as _types

_LIBRARY = {"assert_within_precision": "cp_debug.api.library", "Report": "cp_debug.api.report",
            "SweepReport": "cp_debug.api.sample_reports", "EvalReport": "cp_debug.api.sample_reports",
            "FixReport": "cp_debug.api.fix_library",
            "CpDebugError": "cp_debug.errors", "BadInputError": "cp_debug.errors",
            "BackendUnavailableError": "cp_debug.errors", "UserCodeError": "cp_debug.errors"}


class _CallablePackage(_types.ModuleType):
    """`cp_debug.bisect` is a package (the engine) and the library's function at once: calling the package calls
    `cp_debug.api.library.bisect` (imported then; `sweep`, `eval` and `fix` likewise: `_CALLS`), so
    `cp_debug.bisect(...)` works whether or not the package's modules were imported first (an import sets the
    package as cp_debug's attribute `bisect`)."""

    def __call__(self, *args, **kwargs):
        __tracebackhide__ = True
        from importlib import import_module

        name = self.__name__.rpartition(".")[2]
        return getattr(import_module(_CALLS[name]), name)(*args, **kwargs)


def _callable(name: str) -> None:
    from importlib import import_module

    import_module(f"cp_debug.{name}").__class__ = _CallablePackage  # its __init__.py is a docstring: cheap


_CALLS = {"bisect": "cp_debug.api.library", "sweep": "cp_debug.api.samples_library",
          "eval": "cp_debug.api.samples_library", "fix": "cp_debug.api.fix_library"}
for _name in _CALLS:
    _callable(_name)
del _name


def __getattr__(name: str):
    """`cp_debug.__version__`: the installed distribution's version (importlib.metadata, one home: pyproject.toml),
    looked up when first asked for, so that importing cp_debug reads no metadata; the library's names
    (`_LIBRARY`) imported when first asked for."""
    if name in _LIBRARY:
        from importlib import import_module

        value = getattr(import_module(_LIBRARY[name]), name)
        globals()[name] = value
        return value
    if name != "__version__":
        raise AttributeError(f"module 'cp_debug' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        value = version("cp-debug")
    except PackageNotFoundError:  # a source tree run without being installed
        value = "0+unknown"
    globals()["__version__"] = value
    return value
