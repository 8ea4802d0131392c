"""TransFusion-L's kit (`cpdebug trt-kit --recipe transfusion`; its `kit` plug-in, recipe_contract/recipe.PLUGINS):
Autoware's one graph, `transfusion.onnx`, as autoware_lidar_transfusion deploys it — one stage, `transfusion`: voxels,
num_points, coors -> cls_score0, bbox_pred0, dir_cls_pred0.

- The profile is the node's own. `transfusion_config.hpp` takes `voxels_num` [min, opt, max] of
  transfusion_ml_package.param.yaml (a list of another length leaves its defaults 5000, 30000, 60000) for axis 0 of
  all three inputs, and `transfusion_trt.cpp` (`initTrt`; `network_trt.cpp` `setProfile` before it) sets voxels
  [n, 20, 5], num_points [n], coors [n, 4] at n = min, opt, max. The other axes are the graph's own (the node's
  constants 20, 5, 4: a graph that disagrees is named by the lint that runs first).
- A frame outside the profile is refused: the node skips a frame of fewer voxels than min ("Too few voxels … for
  actual optimization profile") and cuts one of more than max (its max_voxels) in its own order.
- The precision, without --precision: `trt_precision` of transfusion.param.yaml (fp16 or fp32), else fp16. The kit's
  fp16 is cp_debug's FP16 conversion built strongly typed (TensorRT 11's and TensorRT-RTX's only way); the node on
  TensorRT 10 builds the FP32 file with the FP16 builder flag instead, where TensorRT may keep layers in FP32.
- The reference: the deploy module in PyTorch (FP32, deterministic, CPU) on each frame's voxels, voxelized by
  cp_debug as the bisect's subject voxelizes (`recipes/transfusion/subject.py`).
- A fix (`--fix DIR`, a `cpdebug fix --recipe transfusion --out DIR` folder): its transfusion.onnx goes in the kit
  as it is — FP16 with the kept nodes in FP32 through explicit Casts, its precision in the file — so the kit runs fp16
  only, built strongly typed (TensorRT 11 and TensorRT-RTX build no other way; the scripts pass `--stronglyTyped` on
  TensorRT 10); the file is checked against the model's weights (`lint/weights.py`) before the reference runs.
- Read back: `bisect --recipe transfusion` cuts the model at the proposal selection, which the target never ran
  apart, so it refuses a kit; each frame's inputs are written as `inputs/<frame>/transfusion.npz`, and
  `cpdebug bisect --onnx KIT/transfusion.onnx --inputs KIT/inputs/frame_000/transfusion.npz --backends
  ort,trt-fp16@KIT` compares the target's one graph, tensor by tensor, with ONNX Runtime's FP32 run of the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from cp_debug.backends.kit import kit_files as kf
from cp_debug.backends.trt.trt_profile import Profile, ShapeRange
from cp_debug.errors import BadInputError
from cp_debug.kit.content import KitContent, KitRequest, ReferenceRun, frame_scans, torch_reference
from cp_debug.recipes.transfusion.export import ONNX_FILE
from cp_debug.recipes.transfusion.interface import DEPLOY_INPUTS, DEPLOY_OUTPUTS

if TYPE_CHECKING:  # pragma: no cover
    import onnx

    from cp_debug.lidar.record import ModelRecord

STAGE = Path(ONNX_FILE).stem  # the kit's stage: its file is transfusion.onnx, the name the node loads
NODE_PRECISIONS = ("fp16", "fp32")  # trt_precision values the node builds


DEPLOYED_FILES = ONNX_FILE  # what a deployed folder holds
LINTS_FIX = True  # the lint before the kit reads a --fix folder's transfusion.onnx too, against the --params
BISECT_SUFFIX = ""  # the read-back command needs no model options


def model_config(name: str):
    """The model config of preset or config file `name`."""
    from cp_debug.models.transfusion.presets import get_preset

    return get_preset(name)


def check_model(model: "ModelRecord") -> None:
    """An unknown preset is said before anything loads."""
    model_config(model.model_name)


def precisions(fix: Path | None, doc: dict | None, precision: Sequence[str] | None,
               params: Sequence[Path]) -> Sequence[str]:
    """The precisions the kit runs: a fix's (`fix_precisions`), else those given, else the node's `trt_precision`
    (--params), else fp16."""
    if doc is not None:
        return fix_precisions(fix, doc, precision)
    return precision or [node_precision(params or ()) or "fp16"]


def bisect_command(m: kf.Manifest, precision: str) -> str:
    """The command that reads the target's results back: bisect of the one graph on its ONNX file and the kit's first
    frame's inputs, against ONNX Runtime (the module docstring says why)."""
    stage = m.stages[0].name
    return (f"cpdebug bisect --onnx KIT/{stage}.onnx --inputs KIT/{kf.onnx_inputs(m.frames[0].id, stage)} "
            f"--backends ort,trt-{precision}@KIT")


def readme_text(m: kf.Manifest) -> str:
    """What the README says of the one graph: the node's profile, its precision."""
    import textwrap

    stage = m.stages[0].name
    r = m.profile[stage][m.stages[0].inputs[0].name]
    text = (f"TransFusion-L's one graph, `{stage}.onnx`, as autoware_lidar_transfusion deploys it. The engine's "
            f"profile is the node's: axis 0 (`voxels_num`) of every input at min {r['min'][0]}, opt {r['opt'][0]}, "
            f"max {r['max'][0]} (its voxels_num). fp16 here is the FP16 file built strongly typed (TensorRT 11, "
            "TensorRT-RTX); the node on TensorRT 10 builds the FP32 file with the FP16 builder flag instead "
            "(`trt_precision: fp16`), where TensorRT may keep layers in FP32: this kit does not run that engine.")
    if m.source.get("kind") == "fix":
        text += (f" This `{stage}.onnx` is the file of `cpdebug fix` ({m.source.get('path')}): FP16 with the nodes the "
                 "fix keeps in FP32 through explicit Casts. Build it strongly typed, as the scripts do: a build with "
                 "the FP16 builder flag on TensorRT 10 (not strongly typed) may run the kept nodes in FP16 anyway.")
    return "\n" + textwrap.fill(text, width=116, break_on_hyphens=False, break_long_words=False) + "\n"  # paths whole


class OneGraph:
    """The one stage's names, as the kit writer reads a stage."""

    name = STAGE
    input_names = DEPLOY_INPUTS
    output_names = DEPLOY_OUTPUTS


def node_voxels_num(params: Sequence[Path]) -> tuple[tuple[int, int, int], str]:
    """(voxels_num [min, opt, max], where it came from) as the node takes it: the files' three values, else its
    defaults."""
    from cp_debug.recipes.transfusion.lint_sources import AUTOWARE_NODE, NODE_VOXELS_NUM, TRANSFUSION_NODE

    if params:
        from cp_debug.data.autoware_params import read_params

        p = read_params(params, AUTOWARE_NODE).get("voxels_num")
        if p is not None:
            v = p.value
            if not isinstance(v, list) or any(isinstance(x, bool) or not isinstance(x, int) for x in v):
                raise BadInputError(f"{p.where} = {v!r} must be a list of integers [min, opt, max]")
            if len(v) == 3:
                if not 0 < v[0] <= v[1] <= v[2]:
                    raise BadInputError(f"{p.where} = {v!r}: TensorRT needs 0 < min <= opt <= max")
                return (v[0], v[1], v[2]), p.where
            return NODE_VOXELS_NUM, f"{TRANSFUSION_NODE} defaults ({p.where} has {len(v)} values, not 3)"
    return NODE_VOXELS_NUM, f"{TRANSFUSION_NODE} defaults (no --params)"


def node_precision(params: Sequence[Path]) -> str | None:
    """The node's `trt_precision` in the files (fp16 | fp32), or None where they set none."""
    if not params:
        return None
    from cp_debug.data.autoware_params import read_params
    from cp_debug.recipes.transfusion.lint_sources import AUTOWARE_NODE

    p = read_params(params, AUTOWARE_NODE).get("trt_precision")
    if p is None:
        return None
    if str(p.value).lower() not in NODE_PRECISIONS:
        raise BadInputError(f"{p.where} = {p.value!r}: the node builds {' or '.join(NODE_PRECISIONS)}")
    return str(p.value).lower()


def node_profile(voxels_num: Sequence[int], fixed: dict[str, tuple[int, ...]]) -> Profile:
    """The node's optimization profile: axis 0 of every input at voxels_num's min, opt, max; `fixed` the other
    axes of each input (voxels: (20, 5), num_points: (), coors: (4,))."""
    lo, opt, hi = (int(v) for v in voxels_num)
    return {n: ShapeRange((lo, *fixed[n]), (opt, *fixed[n]), (hi, *fixed[n])) for n in DEPLOY_INPUTS}


def content(req: KitRequest) -> KitContent:
    """The one graph's kit content: frames voxelized, checked against the node's profile, run by the reference."""
    import torch

    from cp_debug.lidar.voxelize import voxelize
    from cp_debug.recipes.transfusion.source import load_transfusion
    from cp_debug.recipes.transfusion.stages import TransFusionDeploy

    m = req.model
    cfg = model_config(m.model_name)
    voxels_num, where = node_voxels_num(req.params)
    scans = frame_scans(req, cfg)
    feeds = []
    for token, loaded in scans:
        vox = voxelize(torch.as_tensor(loaded.points), cfg)
        n = int(vox.num_voxels)
        if not voxels_num[0] <= n <= voxels_num[2]:
            what = ("fewer than its min: the node skips such a frame" if n < voxels_num[0] else
                    "more than its max: the node keeps only max of them, in its own order")
            raise BadInputError(f"frame {token} has {n} voxels, {what} (voxels_num {list(voxels_num)}: {where}); "
                                "give frames within it, or --params with a voxels_num covering them")
        feeds.append({"voxels": vox.voxels[:n].float().numpy(),
                      "num_points": vox.num_points[:n].to(torch.int32).numpy(),
                      "coors": vox.coors[:n].to(torch.int32).numpy()})
    loaded_model = load_transfusion(m.model_name, m.checkpoint, m.seed, m.random_weights)
    fix_notes = _fix_checked(req, loaded_model) if req.source_kind == "fix" else []
    module = TransFusionDeploy(loaded_model.model).eval()
    runs = [ReferenceRun([feed], [torch_reference(module, OneGraph, feed, m.seed)]) for feed in feeds]
    fixed = {name: tuple(int(d) for d in arr.shape[1:]) for name, arr in feeds[0].items()}

    def write_onnx(tmp: Path) -> dict[str, "onnx.ModelProto"]:
        return {STAGE: _one_graph(req, loaded_model, scans[0][1].points, tmp)}

    notes = [f"profile: voxels_num {list(voxels_num)} ({where}), as the node builds it", *fix_notes]
    return KitContent(scans, (OneGraph,), runs, write_onnx, lambda i, shapes: node_profile(voxels_num, fixed),
                      notes, npz=True)


def fix_precisions(path: Path, doc: dict, precision: Sequence[str] | None) -> list[str]:
    """The precisions a kit of TransFusion-L's fix runs (fix.json `doc` of folder `path`): fp16 only, the file of the
    fix's FP16 candidate with its kept nodes' Casts. One line otherwise."""
    from cp_debug.backends.spec import BackendSpec

    cand = (doc.get("backends") or {}).get("candidate")
    if doc.get("kind") != "fp16" or not cand or BackendSpec.parse(cand).precision != "fp16":
        raise BadInputError(f"--fix {path} is a fix of {cand or doc.get('kind')}; the TransFusion-L kit takes an FP16 "
                            "candidate's fix (`cpdebug fix --recipe transfusion --backends torch,ort-cpu-fp16`)")
    if not (Path(path) / ONNX_FILE).is_file():
        raise BadInputError(f"--fix {path} has no {ONNX_FILE} (fix status {doc.get('status')}): write the fix again")
    other = [p for p in dict.fromkeys(p.lower() for p in precision or ()) if p != "fp16"]
    if other:
        raise BadInputError(f"--precision {', '.join(other)}: the fix's {ONNX_FILE} is FP16 with its kept nodes in "
                            "FP32, so a kit of it runs fp16; leave --precision out, or leave --fix out (cp_debug's "
                            "export)")
    return ["fp16"]


def _fix_checked(req: KitRequest, loaded) -> list[str]:
    """The fix's transfusion.onnx against the kit's model, before the reference runs: exported from other weights
    (most of them differ: `lint/weights.py`) is one line, exit 2 — the reference would be another network's. Returns
    the notes saying what the fix keeps in FP32 and whether its verification held."""
    import onnx

    from cp_debug.lint.weights import check_weights, exported_elsewhere

    doc = req.fix_doc or {}
    check = check_weights(loaded.model, onnx.load(str(Path(req.onnx_dir) / ONNX_FILE)), ONNX_FILE)
    if exported_elsewhere([check]):
        raise BadInputError(f"--fix {req.onnx_dir}: its {check.line()}: not the model's weights ({loaded.weights}); "
                            f"give the model options the fix was made with (its weights: {doc.get('weights')})")
    kept = ((doc.get("set") or {}).get("onnx_nodes") or {}).get(ONNX_FILE) or []
    modules = (doc.get("set") or {}).get("modules") or []
    held = "holds" if (doc.get("verification") or {}).get("holds") else "does NOT hold"
    what = (f"{len(kept)} node(s) kept in FP32 through explicit Casts" + (f" ({', '.join(modules)})" if modules else "")
            if kept else "nothing kept in FP32 (the fix found the plain FP16 graph within precision)")
    notes = [f"fix {req.onnx_dir}: {ONNX_FILE} FP16 with {what}; its verification in ONNX Runtime {held}; build it "
             "strongly typed (the scripts do)"]
    if node_precision(req.params) == "fp32":
        notes.append("the node's trt_precision is fp32 (--params); this kit runs the fix's FP16 file, at fp16")
    return notes


def _one_graph(req: KitRequest, loaded, points, tmp: Path) -> "onnx.ModelProto":
    """transfusion.onnx at the kit's top level: a deployed file as it is (its interface checked), else cp_debug's
    export of the model (traced on the first frame)."""
    import shutil

    import onnx

    path = tmp / ONNX_FILE
    if req.onnx_dir is not None:
        from cp_debug.recipes.transfusion.lint_sources import transfusion_onnx_path
        from cp_debug.recipes.transfusion.interface import interface_mismatch

        shutil.copyfile(transfusion_onnx_path(req.onnx_dir), path)
        model = onnx.load(str(path))
        wrong = interface_mismatch(model)
        if wrong is not None:
            raise BadInputError(f"{req.onnx_dir}: {ONNX_FILE} {wrong}")
        return model
    from cp_debug.recipes.transfusion.export import export_transfusion

    export_transfusion(loaded.model, loaded.cfg, tmp, sample_points=points)
    return onnx.load(str(path))
