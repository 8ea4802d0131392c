"""CenterPoint's sweep lanes: a backend's two stage runners seen through taps that keep the level's probes, built
once from the CenterPoint subject (its ONNX stages exported once, the probes in pipeline order) and run per frame.

A candidate label `SPEC@DIR` (e.g. `ort@deploy/`) runs the two deployed ONNX files of DIR
(`pts_voxel_encoder.onnx`, `pts_backbone_neck_head.onnx`) instead of the model's own export; its probes are
the tensors of the same names, and those the deployed graph lacks are reported `missing`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cp_debug.errors import BadInputError, CpDebugError
from cp_debug.sweep.failures import one_line
from cp_debug.sweep.records import SweepSettings

BOUNDARIES = ("pillar_features", "spatial_features")  # the glue's tensors between the two stages


class Tap:
    """A runner seen by `run_pipeline`: returns the stage's outputs and keeps the probes (renamed to module
    names) of the last call aside."""

    is_active = True

    def __init__(self, runner: Any, outputs: Sequence[str], rename: dict[str, str]):
        self.runner, self.outputs, self.rename = runner, tuple(outputs), rename
        self.probes: dict[str, np.ndarray] = {}

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._keep(self.runner.infer(feed))

    def can(self, capability) -> bool:
        return self.runner.can(capability)

    def infer_device(self, feed: dict) -> dict:
        """The runner's `infer_device`: outputs and probes stay torch tensors on its device."""
        return self._keep(self.runner.infer_device(feed))

    def _keep(self, out: dict) -> dict:
        self.probes = {self.rename[k]: v for k, v in out.items() if k in self.rename}
        return {k: out[k] for k in self.outputs if k in out}


@dataclass
class Lane:
    label: str
    spec: Any
    encoder: Tap
    backbone: Tap
    missing: tuple[str, ...] = ()
    precision: str = "fp32"  # what it is judged at: the spec's, or the precision a deployed folder's files hold
    resident: bool | None = None  # values kept torch tensors on the spec's device; None: on CUDA

    def amax(self) -> dict[str, float]:
        """probe -> INT8's calibrated amax at that probe's tensor, where the runners quantized it."""
        out = {}
        for tap in (self.encoder, self.backbone):
            found = tap.runner.quant_amax() if hasattr(tap.runner, "quant_amax") else {}
            out.update({tap.rename[t]: float(a) for t, a in (found or {}).items() if t in tap.rename})
        return out

    def kept_resident(self) -> bool:
        """Whether the lane's values stay torch tensors on its device (`resident`, by default on CUDA, where both
        runners take tensors)."""
        from cp_debug.recipes.centerpoint.pipeline import can_take_tensors

        resident = self.spec.device == "cuda" if self.resident is None else self.resident
        return bool(resident) and can_take_tensors(self.encoder) and can_take_tensors(self.backbone)

    def on_cuda(self) -> bool:
        """Whether the lane runs resident on a CUDA device (its values torch tensors there)."""
        return self.spec.device == "cuda" and self.kept_resident()

    def glue_device(self) -> str:
        """Where the lane's glue runs: its device when resident, else the CPU."""
        return self.spec.device if self.kept_resident() else "cpu"

    def run(self, cfg, points: np.ndarray, front=None, meanwhile=None) -> tuple[Any, dict[str, Any]]:
        """The frame through this lane: the result and its probes by name, torch tensors on the device for a CUDA
        lane (the glue runs there too, `run_pipeline`'s resident run), numpy arrays otherwise. `front`: the frame's
        voxels and features already made on `glue_device()` (`pipeline.make_front`); `meanwhile`: `run_pipeline`'s
        `before_decode`."""
        from cp_debug.recipes.centerpoint.pipeline import run_pipeline

        resident = self.kept_resident()
        res = run_pipeline(cfg, points, self.encoder, self.backbone, capture=True, device=self.glue_device(),
                           resident=resident, on_device=True, step_times=False, front=front,
                           before_decode=meanwhile)
        probes = {**self.encoder.probes, **self.backbone.probes}
        self.encoder.probes = self.backbone.probes = {}
        probes.setdefault("pillar_features", res.pillar_features)
        probes["spatial_features"] = res.spatial_features
        probes.update(res.head)
        return res, probes


def run_lane(lane: Lane, cfg, points: np.ndarray, front=None, meanwhile=None) -> tuple[Any, dict[str, Any]]:
    """`lane.run`, an error other than ours as one line naming the lane."""
    try:
        return lane.run(cfg, points, front, meanwhile)
    except CpDebugError:
        raise
    except Exception as err:
        raise RuntimeError(f"{lane.label}: {one_line(err)}") from err


def calibration_feeds(settings: SweepSettings, cfg) -> dict | None:
    """INT8's calibration feeds by stage ("encoder", "backbone"), made once for every INT8 lane; None where no lane is
    INT8 or the Q/DQ files come from `int8_dir`."""
    from cp_debug.backends.spec import BackendSpec

    if not any(BackendSpec.parse(b).precision == "int8" for b in settings.backends) or settings.int8_dir is not None:
        return None
    from cp_debug.data.frames import calibration, points_of
    from cp_debug.recipes.centerpoint.eval.backend_pipeline import int8_calibration

    if settings.calib_scenes < 1:
        raise BadInputError("INT8 backends need --calib-n >= 1")
    from cp_debug.eval.session import load_weights

    model = load_weights(settings.preset, settings.checkpoint, settings.random_weights, settings.seed,
                         settings.recipe).model
    frames = calibration(cfg, settings.calib_scenes, held_out_seeds=True)
    return int8_calibration(cfg, model, points_of(frames, cfg))


def make_lane(label: str, settings: SweepSettings, subject, calib: dict | None) -> Lane:
    """The lane of backend `label`: its two stages' runners (not yet entered) with the level's probes exposed."""
    from cp_debug.backends.factory import check_available
    from cp_debug.backends.spec import BackendSpec, Capability
    from cp_debug.determinism import Determinism
    from cp_debug.recipe_contract.frame_model import stage_runner

    spec = BackendSpec.parse(label)  # SPEC@DIR: the user's deployed files (torch@DIR is refused there)
    check_available(spec)
    det = Determinism(enabled=settings.deterministic, seed=settings.seed, conv_algo=settings.cudnn_algo)
    taps, missing = [], []
    stages = subject.stages
    precision = spec.precision
    if spec.onnx_dir is not None:  # the files' tensors mapped onto our probes (scope names, else structure)
        from cp_debug.bisect.subjects.deployed import deployed_stages

        level = {i: stage_probes(st, settings.level) for i, st in enumerate(stages)}
        found = deployed_stages(spec, subject, level)
        stages = found.stages
        precision = found.precision if spec.precision == "fp32" else spec.precision  # as bisect grades it
    for i, st in enumerate(stages):
        kw: dict = {}
        if spec.precision == "int8" and not spec.is_torch:
            if settings.int8_dir is not None and spec.can(Capability.QDQ_MODEL):
                kw["int8_model"] = st.qdq_onnx()
            elif calib is not None:
                kw["calib_feeds"] = calib["encoder" if i == 0 else "backbone"]
        runner, rename, miss = stage_runner(spec, st, stage_probes(st, settings.level), det, settings.threads, **kw)
        missing += miss
        taps.append(Tap(runner, st.output_names, rename))
    return Lane(label, spec, taps[0], taps[1], tuple(missing), precision)


def build_subject(settings: SweepSettings, onnx_dir: Path | None = None, stages: dict[str, bytes] | None = None):
    """The CenterPoint subject (modules, probe maps); its two ONNX stages loaded from `onnx_dir` when given, or from
    `stages` (stage name -> the serialized graph, as `stage_bytes` gives it: what a Ray actor gets through Ray's
    object store)."""
    from cp_debug.recipes.centerpoint.subject import centerpoint_subject

    subject = centerpoint_subject(preset=settings.preset, checkpoint=settings.checkpoint, seed=settings.seed,
                                  random_weights=settings.random_weights, int8=settings.int8_dir)
    if onnx_dir is not None:
        stages = {st.name: (Path(onnx_dir) / f"{st.name}.onnx").read_bytes() for st in subject.stages
                  if (Path(onnx_dir) / f"{st.name}.onnx").is_file()}
    return with_stages(subject, stages or {})


def with_stages(subject, stages: dict[str, bytes]):
    """`subject` with the ONNX graphs of `stages` (stage name -> serialized graph) in place of its own exports."""
    import onnx

    for st in subject.stages:
        if st.name in stages:
            st.onnx_model = onnx.load_model_from_string(stages[st.name])
    return subject


def stage_bytes(subject) -> dict[str, bytes]:
    """The subject's two ONNX stages (exported here, once), serialized whole (weights the process keeps in files
    read in: another process takes them): stage name -> bytes."""
    from cp_debug.graph.onnx_files import inlined

    return {st.name: inlined(st.onnx()).SerializeToString() for st in subject.stages}


def save_stages(subject, onnx_dir: Path) -> None:
    """Write the subject's two ONNX stages (exported once) for the workers to load."""
    from cp_debug.files import write_bytes_atomic

    for name, data in stage_bytes(subject).items():
        write_bytes_atomic(Path(onnx_dir) / f"{name}.onnx", data, parents=True)


def stage_probes(stage, level: str) -> list[str]:
    """The level's module probes of `stage` that have an ONNX tensor (compared on every backend alike)."""
    pm = stage.probe_map()
    return [p for p in stage.probes_at(level) if pm is not None and p in pm.tensors]


def probe_order(subject, level: str) -> list[str]:
    """Every compared name in pipeline order: encoder probes, the boundaries, backbone probes, head outputs."""
    enc, bb = subject.stages
    enc_probes = stage_probes(enc, level)
    enc_tensors = {enc.probe_map().tensors[p] for p in enc_probes}
    order = list(enc_probes) + [b for b in BOUNDARIES if b not in enc_tensors]
    return order + stage_probes(bb, level) + list(bb.output_names)
