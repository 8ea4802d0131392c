"""What to fix: the request (model, candidate, target, frames, search settings), the user's options laid over a
report's, and the checks made before anything runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cp_debug.backends.spec import BackendSpec, Capability
from cp_debug.errors import BadInputError
from cp_debug.fix.targets import FixTarget
from cp_debug.lidar.record import ModelRecord

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.recipe_contract.recipe import Recipe

# The request's keys that name the model: they go into its ModelRecord (`with_model`).
MODEL_KEYS = ("preset", "config", "checkpoint", "seed", "random_weights", "int8")


@dataclass(frozen=True)
class FixRequest:
    """What to fix: the model (a ModelRecord; its `int8`, a PTQ dir or checkpoint, for INT8 candidates only), the
    candidate against the reference, the target, the frames and how the search runs."""

    target: FixTarget
    candidate: str = "ort-cpu-fp16"
    reference: str = "torch"
    model: ModelRecord = field(default_factory=ModelRecord)
    scenes: int = 8
    first_scene: int = 0
    # None: the default — held-out synthetic frames: on the search's; the user's scenes: their last half, which the
    # search never sees. 0: on the search's frames. N: synthetic: N frames after the search's; scenes: the last N
    verify_scenes: int | None = None
    scenes_path: str | None = None  # the user's scenes (an info file): the frames instead of synthetic held-out ones
    data_root: str | None = None  # where the info file's lidar paths are relative to (default: its folder)
    worst: int = 2
    candidates: tuple[str, ...] | None = None
    first_modules: tuple[str, ...] = ()
    frame_order: tuple[int, ...] | None = None  # the frames worst first (a sweep's ranking), else found by the search
    calib_n: int = 16
    method: str = "mse"
    percentile: float = 99.99
    bootstrap: int = 20
    source: dict = field(default_factory=lambda: {"from": "scratch"})
    recipe: "Recipe" = field(kw_only=True)  # the recipe of the model, resolved by the command line

    @property
    def spec(self) -> BackendSpec:
        return BackendSpec.parse(self.candidate)

    @property
    def kind(self) -> str:
        return self.spec.precision

    @property
    def needs_devkit(self) -> bool:
        """Whether the verification scores mAP with nuscenes-devkit (the recipe's fix says: CenterPoint's pair does;
        a TransFusion-L fix judges its graph's queries instead): checked before the search, never after it."""
        return self.recipe.plugin("fix").needs_devkit(self)


def with_model(model: ModelRecord, **given) -> ModelRecord:
    """`model` with the model options the user gave (None: not given) in place of its own: a config file replaces
    the preset and a preset the config file, as on the command line."""
    given = {k: v for k, v in given.items() if v is not None}
    if not given:
        return model
    fields = model.to_json()
    if "preset" in given:
        fields["config"] = None
    fields.update(given)
    return ModelRecord.of(**fields)


def make_request(model: ModelRecord, base: dict, overrides: dict) -> FixRequest:
    """A FixRequest of `base` (what a report or sweep says) with `overrides` (the user's options; None: not given)
    in its place; the model options among them go into `model`."""
    given = {k: v for k, v in overrides.items() if v is not None}
    model = with_model(model, **{k: given.pop(k) for k in MODEL_KEYS if k in given})
    return FixRequest(**{**base, **given}, model=model)


def check_request(req: FixRequest) -> None:
    """BadInputError before anything runs, for a candidate or reference the fix cannot search with."""
    spec = req.spec
    if not fixable(spec):
        raise BadInputError(f"fix searches ONNX Runtime FP16 or INT8 candidates (ort-cpu-fp16, ort-cuda-fp16, "
                            f"ort-cpu-int8), not {req.candidate}; the written pair builds TensorRT engines (README)")
    ref = BackendSpec.parse(req.reference)
    if ref.precision != "fp32" or not (ref.is_torch or ref.can(Capability.ORT_SESSIONS)):
        raise BadInputError(f"the reference must be FP32 torch or ort, not {req.reference}")
    if req.model.int8 is not None and spec.precision != "int8":
        raise BadInputError("--int8 DIR is a PTQ model: use an INT8 candidate (ort-cpu-int8)")
    if req.worst < 0:
        raise BadInputError(f"--worst-frames must be >= 0, got {req.worst}")
    if spec.onnx_dir is not None and spec.precision != "fp16":
        raise BadInputError(f"fix on a deployed pair ({req.candidate}) searches FP16 candidates (ort-cpu-fp16@DIR): "
                            "the nodes of your FP32 files to keep in FP32; INT8 of your own files is not searched yet")
    if spec.onnx_dir is not None and req.model.int8 is not None:
        raise BadInputError("--int8 DIR is a PTQ model; a deployed pair (@DIR) is fixed in FP16: drop --int8")
    if req.verify_scenes is not None and req.verify_scenes < 0:
        raise BadInputError(f"--verify-n must be >= 0, got {req.verify_scenes}")
    if req.scenes < 1:
        raise BadInputError(f"--scenes must be at least 1, got {req.scenes}")
    if req.first_scene < 0:
        raise BadInputError(f"--first-scene must be >= 0, got {req.first_scene}")
    req.recipe.plugin("fix").check_request(req)


def request_frames(req: FixRequest, cfg):
    """(the search's frames, the verification's). Held-out synthetic frames: `--n N` from `--first-scene`,
    verified on them or on `--verify-n` frames after them. The user's scenes (an info file): every frame from
    `--first-scene`; the last `--verify-n` (default: half) are verified and never seen by the search."""
    from cp_debug.data.frames import HeldOutSet, ScenesSet

    if req.scenes_path is None:
        frames = HeldOutSet.load(cfg, req.scenes, req.first_scene)
        if not req.verify_scenes:
            return frames, frames
        return frames, HeldOutSet.load(cfg, req.verify_scenes, req.first_scene + req.scenes)
    every = ScenesSet.load(cfg, req.scenes_path, req.first_scene, data_root=req.data_root)
    n_verify = len(every) // 2 if req.verify_scenes is None else req.verify_scenes
    if n_verify == 0:
        return every, every
    if n_verify >= len(every):
        raise BadInputError(f"--scenes {req.scenes_path} has {len(every)} frame(s) from frame {req.first_scene} on: "
                            f"too few to verify on {n_verify} the search does not see (give more frames, or "
                            "--verify-n 0 to verify on the search's own)")
    return every.split(n_verify)


def fixable(spec: BackendSpec) -> bool:
    """The candidates fix searches: ONNX Runtime FP16 or INT8 (the written pair then builds TensorRT engines)."""
    return spec.can(Capability.ORT_SESSIONS) and spec.precision in ("fp16", "int8")
