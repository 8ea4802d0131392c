"""`BackendPipeline`: CenterPoint's staged pipeline for one backend spec, run over evaluation scenes.

Each backend's two stage runners (voxel encoder, backbone/neck/head) are built once through `make_runner`
(torch specs on the export stages, ONNX specs on the two exported files; FP16/INT8 transforms as `bisect`
applies them) and reused for every scene. The glue (voxelize, decoration, scatter, decode + NMS) is
`run_pipeline`'s, on the CPU for every backend in evaluation so that differences come from the runners.
INT8 is calibrated per stage on held-out synthetic scenes that are not among the evaluated ones
(`data.frames.calibration`). Scenes are `data.frames.Frame`s.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from cp_debug.data.frames import Frame
from cp_debug.determinism import Determinism
from cp_debug.errors import BadInputError
from cp_debug.eval.boxes import SampleBoxes


class BackendPipeline:
    """The staged pipeline for one backend spec: runners built and activated once, `run(points)` per scan.

    `onnx_dir` holds the two exported files (ONNX specs); `calib` gives the per-stage INT8 calibration feeds
    ({"encoder": [...], "backbone": [...]}) when the spec is INT8; `glue_device` runs voxelize/scatter.
    """

    def __init__(self, label: str, spec, cfg, model, *, onnx_dir: Path | None = None,
                 determinism: Determinism = Determinism(), calib: dict | None = None, glue_device: str = "cpu",
                 rot_y_axis_reference: bool = False, int8_dir: Path | None = None):
        self.label, self.spec, self.cfg, self.model = label, spec, cfg, model
        self.int8_dir = int8_dir if spec.precision == "int8" else None  # --int8: a PTQ dir (cpdebug quantize)
        self.onnx_dir, self.determinism, self.calib = onnx_dir, determinism, calib
        self.glue_device, self.rot_y = glue_device, rot_y_axis_reference
        self._stack: ExitStack | None = None
        self.encoder = self.backbone = None

    def _runners(self) -> tuple[Any, Any]:
        from cp_debug.backends.factory import make_runner
        from cp_debug.backends.spec import Capability
        from cp_debug.models.centerpoint.model import (BACKBONE_INPUTS, HEAD_OUTPUTS, VOXEL_ENCODER_INPUTS,
                                                       VOXEL_ENCODER_OUTPUTS, BackboneNeckHeadStage,
                                                       VoxelEncoderStage)
        from cp_debug.recipes.centerpoint.export import BACKBONE_FILE, VOXEL_ENCODER_FILE

        spec, det = self.spec, self.determinism
        if spec.is_torch:
            enc, bb = VoxelEncoderStage(self.model), BackboneNeckHeadStage(self.model, self.rot_y)
            if self.int8_dir is not None:  # the PTQ checkpoint's modules; the runner turns its quantizers on
                from cp_debug.quant.quantizers import mark_ptq
                from cp_debug.recipes.centerpoint.int8_source import load_int8_model

                self.model = load_int8_model(self.int8_dir, self.cfg).model
                enc = mark_ptq(VoxelEncoderStage(self.model))
                bb = mark_ptq(BackboneNeckHeadStage(self.model, self.rot_y))
            return (make_runner(spec, torch_module=enc, input_names=VOXEL_ENCODER_INPUTS,
                                output_names=VOXEL_ENCODER_OUTPUTS, determinism=det),
                    make_runner(spec, torch_module=bb, input_names=BACKBONE_INPUTS, output_names=HEAD_OUTPUTS,
                                determinism=det))
        if spec.onnx_dir is not None:  # SPEC@DIR: the user's deployed files, checked against our export
            return self._deployed_runners()
        if self.onnx_dir is None:
            raise BadInputError(f"{self.label} needs the exported ONNX files")
        kw: dict = {"determinism": det}
        enc_kw, bb_kw = dict(kw), dict(kw)
        if self.int8_dir is not None and spec.can(Capability.QDQ_MODEL):  # the deployed Q/DQ files, as they are
            return (make_runner(spec, onnx_model=self.onnx_dir / VOXEL_ENCODER_FILE, determinism=det,
                                int8_model=self.int8_dir / VOXEL_ENCODER_FILE),
                    make_runner(spec, onnx_model=self.onnx_dir / BACKBONE_FILE, determinism=det,
                                int8_model=self.int8_dir / BACKBONE_FILE))
        if spec.precision == "int8":
            if not self.calib:
                raise BadInputError(f"{self.label} needs INT8 calibration scenes (--calib-n >= 1)")
            enc_kw["calib_feeds"], bb_kw["calib_feeds"] = self.calib["encoder"], self.calib["backbone"]
        return (make_runner(spec, onnx_model=self.onnx_dir / VOXEL_ENCODER_FILE, **enc_kw),
                make_runner(spec, onnx_model=self.onnx_dir / BACKBONE_FILE, **bb_kw))

    def _deployed_runners(self) -> tuple[Any, Any]:
        """SPEC@DIR: runners over the user's own two files, their interface checked against cp_debug's export of
        the same model (one line, exit 2, on a mix-up); their precision kept, or converted as the spec asks."""
        from cp_debug.backends.factory import make_runner
        from cp_debug.bisect.subjects.deployed import refuse_unloadable
        from cp_debug.graph.model import load_onnx
        from cp_debug.probes.interface import check_interface
        from cp_debug.recipes.centerpoint.export import BACKBONE_FILE, VOXEL_ENCODER_FILE

        spec, runners = self.spec, []
        for name in (VOXEL_ENCODER_FILE, BACKBONE_FILE):
            path = spec.onnx_dir / name
            if not path.is_file():
                raise BadInputError(f"{self.label}: {path} is missing ({spec.onnx_dir} must hold {VOXEL_ENCODER_FILE} "
                                    f"and {BACKBONE_FILE}, as AWML's exporter names them)")
            model = load_onnx(path)
            if self.onnx_dir is not None:
                check_interface(model, load_onnx(self.onnx_dir / name), f"{spec.framework}@{path}")
            refuse_unloadable(spec, [path])  # the file as ONNX Runtime takes it (exit 3), never its emulated twin
            kw: dict = {"determinism": self.determinism}
            if spec.precision == "int8":
                if not self.calib:
                    raise BadInputError(f"{self.label} needs INT8 calibration scenes (--calib-n >= 1)")
                kw["calib_feeds"] = self.calib["encoder" if name == VOXEL_ENCODER_FILE else "backbone"]
            runners.append(make_runner(spec, onnx_model=model, **kw))
        return runners[0], runners[1]

    def __enter__(self) -> "BackendPipeline":
        from cp_debug.backends.factory import check_available

        check_available(self.spec)
        self._stack = ExitStack()
        try:
            self.encoder, self.backbone = self._runners()
            self._stack.enter_context(self.encoder)
            self._stack.enter_context(self.backbone)
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self._stack is not None:
            self._stack.close()
            self._stack = None

    def run(self, points: np.ndarray, capture: bool = False, step_times: bool = True):
        """One scan through the pipeline (`run_pipeline`; `step_times=False`: no per-step seconds, no waiting)."""
        from cp_debug.recipes.centerpoint.pipeline import run_pipeline

        return run_pipeline(self.cfg, points, self.encoder, self.backbone, capture=capture,
                            device=self.glue_device, rot_y_axis_reference=self.rot_y, step_times=step_times)

    def precision_notes(self) -> list[str]:
        notes = []
        for r in (self.encoder, self.backbone):
            rep = r.precision_report() if r is not None else None
            if rep is not None and not rep.honest:
                notes.extend(rep.notes or (f"{r.name}: requested {rep.requested}, ran {rep.effective}",))
        return notes


def int8_calibration(cfg, model, points: Sequence[np.ndarray]) -> dict:
    """Per-stage INT8 calibration feeds from the FP32 torch pipeline over `points`."""
    from cp_debug.backends.spec import BackendSpec

    enc, bb = [], []
    with BackendPipeline("calibration", BackendSpec.parse("torch"), cfg, model) as pipe:
        for pts in points:
            r = pipe.run(pts, capture=True)
            enc.append({"input_features": r.input_features})
            bb.append({"spatial_features": r.spatial_features})
    return {"encoder": enc, "backbone": bb}


@dataclass(frozen=True)
class BackendRun:
    label: str
    spec: str
    detections: dict[str, SampleBoxes]
    seconds: float
    notes: tuple[str, ...] = ()


def run_backend(pipe: BackendPipeline, frames: Sequence[Frame], on_scene: Callable[[int], None] | None = None
                ) -> BackendRun:
    """Every frame through an entered `pipe`; detections keyed by token."""
    out: dict[str, SampleBoxes] = {}
    t0 = time.perf_counter()
    for i, frame in enumerate(frames):
        res = pipe.run(frame.load(pipe.cfg).points)
        out[frame.token] = SampleBoxes.from_detections(res.detections)
        if on_scene:
            on_scene(i)
    return BackendRun(pipe.label, str(pipe.spec), out, time.perf_counter() - t0, tuple(pipe.precision_notes()))
