"""The staged CenterPoint pipeline, as AWML deploys it, with every stage boundary captured.

voxelize -> get_input_features -> [voxel encoder runner] -> scatter -> [backbone/neck/head runner] -> decode.
The glue (voxelizer, decoration, scatter, decode) is one torch implementation shared by every backend, so a
divergence can only come from the two runners; the captured boundaries let it be followed across the two
ONNX files and the glue between them.

A *resident* run keeps every value a torch tensor on the glue's device from the points to the boxes: runners that
can (`Capability.DEVICE_TENSORS`) are fed and read through `infer_device`, and on CUDA nothing crosses the host
between the stages (the BEV canvas, 133 MB at awml-base, was scattered, copied out and copied back in per frame).
It gives the numbers of the numpy path (the same torch glue and runners; decode's device reductions aside).

The glue's first steps (the points' columns, voxelize, get_input_features) depend on the scan and the device only:
`make_front` makes them once, and every run on that device can take them (`run_pipeline(front=...)`), on another
thread ahead of the run if need be (a sweep makes the next frames' fronts while the current one runs).
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from cp_debug.errors import BadInputError
from cp_debug.lidar.boxes import Detections
from cp_debug.models.centerpoint.decode import decode
from cp_debug.models.centerpoint.model import (
    BACKBONE_INPUTS,
    HEAD_OUTPUTS,
    STAGE_BACKBONE,
    STAGE_VOXEL_ENCODER,
    VOXEL_ENCODER_INPUTS,
    VOXEL_ENCODER_OUTPUTS,
)

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.models.centerpoint.config import CenterPointConfig
    from cp_debug.lidar.voxelize import Voxels

# Timing keys, in pipeline order.
STEP_VOXELIZE = "voxelize"
STEP_INPUT_FEATURES = "get_input_features"
STEP_SCATTER = "pts_middle_encoder"
STEP_DECODE = "decode"
STEPS = (STEP_VOXELIZE, STEP_INPUT_FEATURES, STAGE_VOXEL_ENCODER, STEP_SCATTER, STAGE_BACKBONE, STEP_DECODE)


@dataclass(frozen=True)
class PipelineResult:
    """Every stage boundary of one run (None where capture=False), the decoded boxes and per-step seconds."""

    voxels: "Voxels | None"
    input_features: np.ndarray | None
    pillar_features: np.ndarray | None
    spatial_features: np.ndarray | None
    head: dict[str, np.ndarray]
    detections: Detections
    timings: dict[str, float] = field(default_factory=dict)

    def boundaries(self) -> dict[str, np.ndarray]:
        """Captured tensors by name, in pipeline order: voxels, num_points, coors, input_features,
        pillar_features, spatial_features, then the six head maps (numpy, wherever the run kept them)."""
        out: dict[str, np.ndarray] = {}
        if self.voxels is not None:
            out.update(self.voxels.numpy())
        for name in ("input_features", "pillar_features", "spatial_features"):
            value = getattr(self, name)
            if value is not None:
                out[name] = _host(value)
        out.update({n: _host(self.head[n]) for n in HEAD_OUTPUTS})
        return out

    def host(self) -> "PipelineResult":
        """This result with its tensors as numpy arrays (a resident run kept torch tensors on its device)."""
        return replace(self, input_features=_host(self.input_features), pillar_features=_host(self.pillar_features),
                       spatial_features=_host(self.spatial_features),
                       head={n: _host(v) for n, v in self.head.items()})

    @property
    def total_seconds(self) -> float:
        return float(sum(self.timings.values()))


@dataclass(frozen=True)
class Front:
    """A scan's glue up to the voxel encoder's input, made on `device` (`make_front`): the model's point columns,
    the voxels and the decorated features (torch). Runs take it read-only, so one front serves every run on its
    device with the same voxel cap."""

    device: str
    max_voxels: int
    points: np.ndarray
    voxels: "Voxels"
    features: Any

    def used_on(self, stream) -> None:
        """Tell torch's allocator that `stream` (a CUDA stream other than the one the front was made on) reads the
        front's tensors: their memory is not handed out again before that stream's work queued so far is done."""
        for t in (self.voxels.voxels, self.voxels.num_points, self.voxels.coors, self.features):
            if t.is_cuda:
                t.record_stream(stream)


def make_front(model_cfg: "CenterPointConfig", points, device: str = "cpu", *, max_voxels: int | None = None) -> Front:
    """The points checked and cut to the model's columns, voxelized on `device` and decorated: what `run_pipeline`
    does first. A scan with no point inside the preset's range is refused (`BadInputError`)."""
    from cp_debug.models.centerpoint.pillar_encoder import get_input_features

    pts, vox, cap = _voxelized(model_cfg, points, device, max_voxels)
    return Front(str(device), cap, pts, vox, get_input_features(vox.voxels, vox.num_points, vox.coors, model_cfg))


def _voxelized(model_cfg: "CenterPointConfig", points, device, max_voxels: int | None):
    """`make_front`'s first part: (the model's point columns, their voxels, the voxel cap)."""
    import torch

    from cp_debug.lidar.points import prepare_points
    from cp_debug.lidar.voxelize import voxelize

    cfg = model_cfg if max_voxels is None else replace(model_cfg, max_voxels=int(max_voxels))
    if isinstance(points, torch.Tensor):
        points = points.detach().cpu().numpy()
    pts = prepare_points(np.asarray(points), cfg, source="points")
    vox = voxelize(pts, cfg, device=device)
    if vox.num_voxels == 0:
        raise BadInputError(
            f"no point lies inside preset {cfg.name!r}'s point_cloud_range {list(cfg.point_cloud_range)}; "
            "check the point file's units and frame"
        )
    return pts, vox, int(cfg.max_voxels)


def _host(value):
    """A torch tensor as a numpy array (a copy off the device); anything else as it is."""
    if value is None or isinstance(value, np.ndarray) or not hasattr(value, "detach"):
        return value
    return value.detach().cpu().numpy()


def can_take_tensors(runner: Any) -> bool:
    """Whether `runner` is fed and read as torch tensors (`infer_device`)."""
    from cp_debug.backends.spec import Capability

    can = getattr(runner, "can", None)
    return bool(can is not None and can(Capability.DEVICE_TENSORS))


def _run(runner: Any, feed: dict, stage: str, device=None) -> dict:
    """The runner on `feed`; with `device` (a resident run) torch tensors in and out, on that device: through
    `infer_device` where the runner can, else numpy at its boundary."""
    if device is None:
        out = runner.infer(feed)
    elif can_take_tensors(runner):
        out = runner.infer_device(feed)
    else:
        out = runner.infer({k: _host(v) for k, v in feed.items()})
    if not isinstance(out, dict):
        raise BadInputError(f"the {stage} runner returned a {type(out).__name__}; runners must return a "
                            "dict by tensor name")
    if device is not None:
        import torch

        out = {k: torch.as_tensor(v).to(device) for k, v in out.items()}
    return out


def _check_pillars(out: dict, n_voxels: int, channels: int) -> np.ndarray:
    name = VOXEL_ENCODER_OUTPUTS[0]
    if name not in out:
        raise BadInputError(f"the {STAGE_VOXEL_ENCODER} runner returned {', '.join(out) or 'nothing'}, not {name!r}")
    arr = out[name] if hasattr(out[name], "shape") else np.asarray(out[name])
    if tuple(arr.shape) != (n_voxels, 1, channels):
        raise BadInputError(
            f"the {STAGE_VOXEL_ENCODER} runner returned {name} of shape {tuple(arr.shape)}, expected ({n_voxels}, 1, "
            f"{channels}): is the encoder fed the decorated input_features and exported from PillarFeatureNet?"
        )
    return arr


def _check_head(out: dict, cfg: "CenterPointConfig", batch: int) -> dict[str, np.ndarray]:
    missing = [n for n in HEAD_OUTPUTS if n not in out]
    if missing:
        raise BadInputError(
            f"the {STAGE_BACKBONE} runner returned {', '.join(out) or 'nothing'}; missing {', '.join(missing)}"
        )
    w, h = cfg.head_size
    channels = cfg.head_channels()
    maps = {n: out[n] if hasattr(out[n], "shape") else np.asarray(out[n]) for n in HEAD_OUTPUTS}
    for n in HEAD_OUTPUTS:
        shape = tuple(maps[n].shape)
        if shape != (batch, channels[n], h, w):
            raise BadInputError(
                f"the {STAGE_BACKBONE} runner returned {n} of shape {shape}, expected {(batch, channels[n], h, w)} "
                f"for preset {cfg.name!r}"
            )
    return maps


def _activated(stack: ExitStack, runner: Any) -> Any:
    if getattr(runner, "is_active", True) is False and hasattr(runner, "__enter__"):
        stack.enter_context(runner)
    return runner


def run_pipeline(
    model_cfg: "CenterPointConfig",
    points,
    encoder_runner: Any,
    backbone_runner: Any,
    *,
    capture: bool = True,
    device: str = "cpu",
    rot_y_axis_reference: bool = False,
    max_voxels: int | None = None,
    feature_transform: Callable[[Any], Any] | None = None,
    heat_activation: str = "sigmoid",
    resident: bool | None = None,
    on_device: bool = False,
    step_times: bool = True,
    front: Front | None = None,
    before_decode: Callable[[], None] | None = None,
) -> PipelineResult:
    """Run one scan through the staged pipeline. `points`: (M, 5) or (M, in_channels) array.

    A deployment's glue can be replayed: `max_voxels` overrides the preset's voxel cap, `feature_transform`
    maps the decorated input features (torch, (N, P, C)) before the encoder, `heat_activation` goes to `decode`.

    The runners take {"input_features"} -> {"pillar_features"} and {"spatial_features"} -> the six head maps.
    A runner that is not active is activated for this call and deactivated after it.

    `resident` (see the module docstring): None runs resident on a CUDA `device` when both runners take tensors.
    A resident run's result holds torch tensors on `device` when `on_device`, else numpy arrays as any run's.

    `step_times`: each step's seconds in `timings`, a CUDA run waiting for the step's kernels at its end (what
    `bench` reports). False leaves `timings` empty and the device's queue full (a sweep's frames need no step times).

    `front`: this scan's first steps already made on `device` (`make_front`, same voxel cap); `points` is then not
    read again and `timings` has no voxelize or get_input_features step.

    `before_decode()`: called once the head maps are asked for (on CUDA: queued, not yet made) and before decode
    reads them, for host work that can run meanwhile (a sweep judges its previous frame there).
    """
    import torch

    from cp_debug.models.centerpoint.pillar_encoder import get_input_features
    from cp_debug.models.centerpoint.scatter import PointPillarsScatter

    cfg = model_cfg
    cap = cfg.max_voxels if max_voxels is None else int(max_voxels)
    if front is not None and (front.device != str(device) or front.max_voxels != cap):
        raise ValueError(f"a front made on {front.device} with {front.max_voxels} voxels at most was given to a run "
                         f"on {device} with {cap}")
    if resident is None:
        resident = str(device).startswith("cuda") and all(map(can_take_tensors, (encoder_runner, backbone_runner)))
    on_cuda = resident and str(device).startswith("cuda")
    timings: dict[str, float] = {}

    def tick(step: str, start: float) -> float:
        if not step_times:
            return start
        if on_cuda:  # the step's kernels are done: its time is its own
            torch.cuda.synchronize(device)
        now = time.perf_counter()
        timings[step] = now - start
        return now

    dev = device if resident else None
    with ExitStack() as stack:
        encoder = _activated(stack, encoder_runner)
        backbone = _activated(stack, backbone_runner)

        t = time.perf_counter()
        if front is None:
            _, vox, _ = _voxelized(cfg, points, device, max_voxels)
            t = tick(STEP_VOXELIZE, t)
            feats = get_input_features(vox.voxels, vox.num_points, vox.coors, cfg)
        else:
            vox, feats = front.voxels, front.features
        if feature_transform is not None:
            feats = feature_transform(feats)
        if not resident:
            feats = feats.detach().cpu().numpy()
        if front is None:
            t = tick(STEP_INPUT_FEATURES, t)

        enc_out = _run(encoder, {VOXEL_ENCODER_INPUTS[0]: feats}, STAGE_VOXEL_ENCODER, dev)
        pillars = _check_pillars(enc_out, vox.num_voxels, cfg.pillar_channels)
        if not resident:
            pillars = np.asarray(_host(pillars))
        t = tick(STAGE_VOXEL_ENCODER, t)

        nx, ny = cfg.grid_size
        scatter = PointPillarsScatter(cfg.pillar_channels, (ny, nx))
        if resident:
            pillars_t = pillars.to(device=device, dtype=torch.float32)
        else:
            pillars_t = torch.from_numpy(np.ascontiguousarray(pillars, dtype=np.float32)).to(device)
        spatial = scatter(pillars_t.squeeze(1), vox.coors, 1)
        if not resident:
            spatial = spatial.detach().cpu().numpy()
        t = tick(STEP_SCATTER, t)

        head = _check_head(_run(backbone, {BACKBONE_INPUTS[0]: spatial}, STAGE_BACKBONE, dev), cfg, 1)
        if not resident:
            head = {n: np.asarray(_host(v)) for n, v in head.items()}
        t = tick(STAGE_BACKBONE, t)
        if before_decode is not None:
            before_decode()

        dets = decode(head, cfg, rot_y_axis_reference=rot_y_axis_reference, heat_activation=heat_activation,
                      device=dev)
        tick(STEP_DECODE, t)

    result = PipelineResult(
        voxels=vox if capture else None,
        input_features=feats if capture else None,
        pillar_features=pillars if capture else None,
        spatial_features=spatial if capture else None,
        head=head,
        detections=dets,
        timings=timings,
    )
    return result if not resident or on_device else result.host()
