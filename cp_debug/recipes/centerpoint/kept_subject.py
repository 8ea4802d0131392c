"""A CenterPoint preset's bisect subject kept between processes, so that a bisect whose backends are all ONNX Runtime
(`-b ort,ort-cpu-fp16`, `ort-cuda,ort-cuda-fp16`) runs without importing torch (issue 118).

Everything such a run reads of the subject is made once by a run that built it in torch and kept in the cache's
`subjects` folder (`files.cache_dir`, bounded by `files.prune_cache`), one pickle written whole: the decorated input
features and the voxels' coordinates, the two stages' exported graphs, module traces and probe maps, what making
them said (`export.said.Said`: said again on reading, so a run's third-party warnings and their counts are the same
either way), the stages' `stage`-level probes and output aliases, the module's weight bytes, the report's facts and
the scan for the bird's-eye pictures. The scatter between the stages runs in numpy (a copy of each pillar's
features to its cell: the same numbers as `models/centerpoint/scatter.py`).

The key is what can be known without torch (`kept_key`): the preset's name and settings (seed, random weights, the
trace's side), the shipped weights file's size and time, the versions of torch, onnx and numpy as installed and
every source file of cp_debug (size and time). Only a shipped preset with no checkpoint, point file or `--int8` is
kept. A finding that reads the module (a diverged run's weights) builds the torch subject then (`Stage.torch_side`).
Off with the cache (`CPDEBUG_NO_CACHE=1`).
"""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.bisect.subjects.subject import Subject

SCHEMA = "cp_debug.kept_subject/1"


def kept_subject(preset: Any, settings: dict, make: Callable[[], "Subject"]) -> "Subject":
    """The subject of a shipped preset for a run whose backends are all ONNX Runtime's: read back where an earlier
    run kept it, else `make()` (torch), kept once the run has mapped its probes; any other run: `make()`."""
    from cp_debug.bisect.subjects.subject import ONNX_RUNTIME_ONLY

    key = kept_key(preset, settings) if ONNX_RUNTIME_ONLY.get() else None
    if key is None:
        return make()
    found = read_kept(key, make)
    if found is not None:
        return found
    subject = make()
    glue_args, scene = getattr(subject.glue, "kept", None), subject.scene
    if glue_args is not None and scene is not None:
        keep_when_mapped(subject, key, glue_args, (scene.config, scene.points, scene.truth))
    return subject


def kept_key(preset: Any, settings: dict) -> str | None:
    """The key a shipped preset's subject is kept under, or None where it is not kept (a config file, a config
    object; the cache off). Reads no torch."""
    from cp_debug.files import cache_dir, tree_stamp
    from cp_debug.models.centerpoint.presets import PRESET_NAMES
    from cp_debug.models.centerpoint.source import shipped_checkpoint

    if not isinstance(preset, str) or preset not in PRESET_NAMES or cache_dir("subjects") is None:
        return None
    from importlib.metadata import PackageNotFoundError, version

    import cp_debug

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return ""

    weights = shipped_checkpoint(preset)
    stamp = None if weights is None else (str(weights), weights.stat().st_size, weights.stat().st_mtime_ns)
    h = hashlib.sha256(json.dumps([SCHEMA, preset, settings, stamp, cp_debug.__version__,
                                   [installed(n) for n in ("torch", "onnx", "numpy")]], default=str).encode())
    h.update(repr(tree_stamp(Path(cp_debug.__file__).parent, ".py")).encode())
    return h.hexdigest()


def read_kept(key: str, make: Callable[[], "Subject"]) -> "Subject | None":
    """The subject kept under `key` (its module made by `make()` where a finding reads it), or None."""
    from cp_debug.files import cache_dir

    folder = cache_dir("subjects")
    path = None if folder is None else folder / f"{key}.pkl"
    try:
        with open(path, "rb") as f:  # type: ignore[arg-type]
            kept = pickle.load(f)
    except (OSError, TypeError, EOFError, pickle.UnpicklingError, AttributeError, ImportError):
        return None
    if not isinstance(kept, dict) or kept.get("schema") != SCHEMA:
        return None
    return _subject(kept, make)


def keep_when_mapped(subject: "Subject", key: str, glue_args: tuple[np.ndarray, int, int, int],
                     scan: tuple) -> None:
    """Ask `subject`'s stages to keep what their graph and probe map said, and keep the subject once the last of
    them is mapped (the engine's export phase: `Stage.keep_said`). `glue_args`: (coors, channels, ny, nx) of the
    scatter; `scan`: (cfg, points, truth) of the pictures."""
    for st in subject.stages:
        st.said = []
    subject.stages[-1].after_said = lambda: _write(subject, key, glue_args, scan)


def _write(subject: "Subject", key: str, glue_args: tuple, scan: tuple) -> None:
    from cp_debug.errors import CpDebugError
    from cp_debug.files import cache_dir, prune_after_write, write_atomic

    folder = cache_dir("subjects")
    if folder is None or any(st.made_probe_map is None or st.onnx_model is None or st.export_note
                             or len(st.said or ()) != 1 or st.onnx_model.ByteSize() > 1 << 30
                             for st in subject.stages):
        return  # a graph past 1 GB (external weights), a fallback's note: made each time
    stages = [{"name": st.name, "input_names": st.input_names, "output_names": st.output_names,
               "stage_probes": st.stage_probes, "output_aliases": dict(st.output_aliases), "exporter": st.exporter,
               "export_warnings": tuple(st.export_warnings), "trace": st.trace(), "map": st.made_probe_map,
               "said": st.said[0], "graph": st.onnx_model.SerializeToString(), "kept_bytes": st.weight_bytes()}
              for st in subject.stages]
    kept = {"schema": SCHEMA, "name": subject.name, "inputs": dict(subject.inputs), "glue": glue_args,
            "facts": subject.facts, "warnings": list(subject.warnings), "told": tuple(subject.told),
            "default_level": subject.default_level, "scan": scan, "stages": stages}
    try:
        data = pickle.dumps(kept, protocol=pickle.HIGHEST_PROTOCOL)
        write_atomic(folder / f"{key}.pkl", lambda f: f.write(data), parents=True)
        prune_after_write(folder, len(data))
    except (OSError, CpDebugError, pickle.PicklingError, TypeError, AttributeError):
        return  # a folder that cannot be written, a part that does not pickle: made again next time
    finally:
        for st in subject.stages:
            st.said, st.after_said = None, None


def scatter_glue(coors: np.ndarray, channels: int, ny: int, nx: int):
    """Stage 1's feed from a backend's own pillar features: mmdet3d's PointPillarsScatter in numpy (batch 1)."""
    cells = coors[:, 2].astype(np.int64) * nx + coors[:, 3].astype(np.int64)

    def glue(index: int, upstream: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        pillars = np.asarray(upstream["pillar_features"], dtype=np.float32)
        canvas = np.zeros((channels, nx * ny), dtype=np.float32)
        canvas[:, cells] = pillars.reshape(pillars.shape[0], -1).T
        return {"spatial_features": canvas.reshape(1, channels, ny, nx)}

    return glue


def _subject(kept: dict, make: Callable[[], "Subject"]) -> "Subject":
    from cp_debug.bisect.result import BevScene
    from cp_debug.bisect.subjects.subject import Stage, Subject
    from cp_debug.models.centerpoint.autoware_ml_names import to_cp_debug
    from cp_debug.models.centerpoint.decode import HEAD_NAMES, decode
    from cp_debug.recipes.centerpoint.detection_verdict import detection_verdict

    made: list = []

    def torch_side(i: int):
        def side():
            if not made:
                made.append(make())
            st = made[0].stages[i]
            return st.module, st.example_inputs
        return side

    stages = [Stage(name=s["name"], input_names=s["input_names"], output_names=s["output_names"],
                    export=_export(s), stage_probes=s["stage_probes"], output_aliases=s["output_aliases"],
                    foreign_names=to_cp_debug, _trace=s["trace"], _map=s["map"], torch_side=torch_side(i),
                    kept_bytes=s["kept_bytes"])
              for i, s in enumerate(kept["stages"])]
    cfg, points, truth = kept["scan"]
    return Subject(name=kept["name"], stages=stages, inputs=kept["inputs"], glue=scatter_glue(*kept["glue"]),
                   facts=kept["facts"], default_level=kept["default_level"], warnings=list(kept["warnings"]),
                   told=kept["told"], detection_verdict=detection_verdict(cfg),
                   scene=BevScene(cfg, points, truth, decode=decode, head_names=HEAD_NAMES))


def _export(s: dict):
    def read():
        import onnx

        from cp_debug.export.said import say_again
        from cp_debug.export.torch_export import ExportResult

        say_again(s["said"])
        return ExportResult(onnx.load_from_string(s["graph"]), s["exporter"], s["export_warnings"], cache="hit")
    return read
