"""CenterPoint's part of `cpdebug trt-kit` (its `kit` plug-in, recipe_contract/recipe.PLUGINS): the pair (voxel encoder,
backbone/neck/head), each frame's stages fed as bisect feeds its reference (`recipes/centerpoint/subject.py`), the
profile over the frames with the first stage's voxel axis up to the config's max_voxels; read back by
`bisect --points KIT/frames/<frame>.npy --backends torch,trt-<precision>@KIT`."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from cp_debug.backends.kit import kit_files as kf
from cp_debug.kit.content import KitContent, KitRequest, ReferenceRun, frame_scans, torch_reference

if TYPE_CHECKING:  # pragma: no cover
    import onnx

    from cp_debug.backends.trt.trt_profile import Profile
    from cp_debug.lidar.record import ModelRecord

DEPLOYED_FILES = "pts_voxel_encoder.onnx and pts_backbone_neck_head.onnx"  # what a deployed folder holds
LINTS_FIX = False  # the lint before the kit reads a --fix folder's files too (a fix writes the pair lint reads)
BISECT_SUFFIX = " [model options as for the kit]"  # after the README's read-back command


def model_config(name: str):
    """The model config of preset or config file `name`."""
    from cp_debug.models.centerpoint.presets import as_config

    return as_config(name)


def check_model(model: "ModelRecord") -> None:
    """Nothing said before the model loads (the preset is read when the reference runs)."""


def precisions(fix: Path | None, doc: dict | None, precision: Sequence[str] | None,
               params: Sequence[Path]) -> Sequence[str] | None:
    """The precisions the kit runs: those given (None: the kit's default)."""
    return precision


def bisect_command(m: kf.Manifest, precision: str) -> str:
    """The command that reads the target's results back: bisect on the kit's first frame."""
    return f"cpdebug bisect --backends torch,trt-{precision}@KIT --points KIT/frames/{m.frames[0].id}.npy"


def readme_text(m: kf.Manifest) -> str:
    """What the README says of CenterPoint's pair beyond the kit's own text: nothing."""
    return ""


def content(req: KitRequest) -> KitContent:
    """CenterPoint's pair: each frame's stages fed as bisect feeds its reference (`recipes/centerpoint/subject.py`),
    the profile over the frames with the first stage's voxel axis up to the config's max_voxels."""
    from functools import partial

    from cp_debug.backends.trt.trt_profile import profile_from_shapes
    from cp_debug.recipes.centerpoint.subject import centerpoint_subject

    m = req.model
    cfg = model_config(m.model_name)
    scans = frame_scans(req, cfg)
    runs, subject = [], None
    for _, loaded in scans:
        subject = centerpoint_subject(preset=cfg, checkpoint=m.checkpoint, points=loaded, seed=m.seed,
                                      random_weights=m.random_weights)
        feeds, outputs, upstream = [], [], {}
        for i, st in enumerate(subject.stages):
            feed = subject.feed(i, upstream)
            out = torch_reference(st.module, st, feed, m.seed)
            feeds.append(feed)
            outputs.append(out)
            upstream.update(out)
        runs.append(ReferenceRun(feeds, outputs))

    def profile(i: int, shapes: list) -> "Profile":
        caps = {"input_features": {0: cfg.max_voxels}} if i == 0 else {}
        return profile_from_shapes(shapes, {n: c for n, c in caps.items() if n in subject.stages[i].input_names})

    return KitContent(scans, tuple(subject.stages), runs, partial(_centerpoint_onnx, req, subject), profile)


def _centerpoint_onnx(req: KitRequest, subject, tmp: Path) -> dict[str, "onnx.ModelProto"]:
    """The pair at the top level: a deployed folder's files as they are (checked against the model), else
    cp_debug's export."""
    from cp_debug.bisect.subjects.deployed import deployed_stages
    from cp_debug.graph.onnx_files import save_onnx

    if req.onnx_dir is not None:
        from cp_debug.backends.spec import BackendSpec

        found = deployed_stages(BackendSpec.parse(f"ort@{req.onnx_dir}"), subject, {})  # interface checked
        models = {st.name: view.onnx() for st, view in zip(subject.stages, found.stages)}  # the files, loaded once
        for path in found.files:
            shutil.copyfile(path, tmp / f"{Path(path).stem}.onnx")
    else:
        models = {st.name: st.onnx() for st in subject.stages}
        for name, model in models.items():
            save_onnx(model, tmp / f"{name}.onnx")  # whole on its own, never pointing into the weights folder
    return models
