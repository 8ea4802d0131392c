"""What a kit holds, before it is written (`cpdebug trt-kit`): the request, and a recipe's `KitContent` — its
frames, stages, the reference's values per frame and its ONNX files, built by the recipe's `kit` plug-in
(`recipes/<name>/kit.py`, recipe_contract/recipe.PLUGINS; any `--torch` / `--onnx` model's: `graph_kit.py`);
`writer.py` writes any."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from cp_debug.backends.kit import kit_files as kf
from cp_debug.errors import BadInputError

if TYPE_CHECKING:  # pragma: no cover
    import onnx

    from cp_debug.backends.trt.trt_profile import Profile
    from cp_debug.data.frames import Frame
    from cp_debug.data.point_files import LoadedPoints
    from cp_debug.lidar.record import ModelRecord
    from cp_debug.recipe_contract.recipe import Recipe

KIT_PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class GraphSource:
    """Any one-graph model's kit (`trt-kit --torch FILE.py:FUNC | --onnx FILE`): the model, its samples (`--inputs`:
    .npz files or folders of them, one sample a file) and the optimization profile given in trtexec's spelling
    (`ranges`: "min" / "opt" / "max" -> input -> shape; an input not given takes its range from the samples)."""

    torch: str | None = None
    onnx: Path | None = None
    inputs: tuple[Path, ...] = ()
    ranges: dict[str, dict[str, tuple[int, ...]]] = field(default_factory=dict)
    exporter: str = "auto"

    def to_json(self) -> dict:
        return {"kind": "torch" if self.torch else "onnx", "path": self.torch or str(self.onnx),
                "inputs": [str(p) for p in self.inputs], "ranges": {k: {n: list(s) for n, s in v.items()}
                                                                    for k, v in self.ranges.items()}}


@dataclass(frozen=True)
class KitRequest:
    """What to put in a kit: the model (the reference), the ONNX pair (None: cp_debug's export of the model; a
    folder: a deployed pair or a fix's), the frames, the precisions the target runs."""

    model: "ModelRecord"
    out: Path
    onnx_dir: Path | None = None
    source_kind: str = "export"  # export | deployed | fix
    points: tuple[Path, ...] = ()
    frames: tuple["Frame", ...] = ()  # --scenes / --n; with neither and no points: the model's own scan of seed
    precisions: tuple[str, ...] = ("fp16",)
    force: bool = False
    recipe: "Recipe" = field(kw_only=True)  # the recipe whose `kit` plug-in says what goes in (handed down)
    params: tuple[Path, ...] = ()  # Autoware's parameter files (TransFusion: voxels_num sets the profile)
    fix_doc: dict | None = None  # fix.json of a --fix folder (read above the kit: fix/ is a floor above it)
    graph: GraphSource | None = None  # any `--torch` / `--onnx` model (the module recipe's kit), not a preset's


@dataclass
class ReferenceRun:
    """The reference over one frame: each stage's feed and outputs."""

    feeds: list[dict]  # per stage
    outputs: list[dict]  # per stage


@dataclass(frozen=True)
class SampleFrame:
    """A frame that is no point cloud: one sample of a model's inputs (`source`: where it came from). Its kit file is
    the sample as one .npz (`kit_files.onnx_inputs`), which `bisect --torch/--onnx … --inputs` reads."""

    source: str
    points: None = None


@dataclass
class KitContent:
    """What a recipe puts in a kit: the frames (token, points; a `SampleFrame` for a model that reads no points),
    the stages (each with `name`, `input_names`, `output_names`), the reference's feeds and outputs per frame,
    `write_onnx(folder)` writing the top-level ONNX files and returning them by stage, `profile(stage index,
    [{input: shape} per frame])` the stage's optimization profile, notes for the terminal, `npz`: each frame's
    inputs of each stage also as one .npz (`bisect --onnx … --inputs`), and `extra(folder, manifest)` writing files
    of the recipe's own."""

    scans: list[tuple[str, "LoadedPoints | SampleFrame"]]
    stages: tuple[Any, ...]
    runs: list[ReferenceRun]
    write_onnx: Callable[[Path], dict[str, "onnx.ModelProto"]]
    profile: Callable[[int, list[dict[str, tuple[int, ...]]]], "Profile"]
    notes: list[str] = field(default_factory=list)
    extra: Callable[[Path, kf.Manifest], None] | None = None
    npz: bool = False


def frame_scans(req: KitRequest, cfg) -> list[tuple[str, "LoadedPoints"]]:
    """(token, the model's points) per frame: --points files as bisect reads them, --scenes / --n frames, or the
    model's own scan of the seed (bisect's default input)."""
    from cp_debug.data.frames import ModelScan
    from cp_debug.data.point_files import load_point_file, points_from_array

    out: list[tuple[str, LoadedPoints]] = [(Path(p).stem, load_point_file(p, cfg)) for p in req.points]
    out += [(f.token, points_from_array(f.load(cfg).points, cfg, f"{f.token}")) for f in req.frames]
    if not out:
        scan = ModelScan(req.model.seed)
        out.append((f"seed{req.model.seed}", points_from_array(scan.load(cfg).points, cfg, scan.describe())))
    tokens = [t for t, _ in out]
    if len(set(tokens)) != len(tokens):
        raise BadInputError("two frames share a token (a file stem): give each point file its own name")
    return out


def torch_reference(module, st, feed: dict, seed: int) -> dict:
    """One stage's reference outputs: `module` in PyTorch, deterministic, on the CPU, as bisect runs its reference."""
    return reference_outputs("torch", st, [feed], seed, torch_module=module)[0]


def reference_outputs(spec: str, st, feeds: list[dict], seed: int, **model) -> list[dict]:
    """Each feed's outputs of stage `st` (`name`, `input_names`, `output_names`) on the reference `spec` ("torch":
    the module, `torch_module=`; "ort": ONNX Runtime FP32 on the CPU, `onnx_model=`, bisect --onnx's reference),
    deterministic, one runner for every feed."""
    from cp_debug.backends.factory import make_runner
    from cp_debug.backends.spec import BackendSpec
    from cp_debug.determinism import Determinism

    with make_runner(BackendSpec.parse(spec), input_names=st.input_names, output_names=st.output_names,
                     determinism=Determinism(enabled=True, seed=seed), **model) as runner:
        return [{k: out[k] for k in st.output_names} for out in map(runner.infer, feeds)]


def check_fix(path: Path, doc: dict, model: "ModelRecord", recipe: str, made_for: str) -> None:
    """fix.json `doc` of the `cpdebug fix --out DIR` folder `path` the kit takes (`--fix DIR`): a fix of `recipe`'s
    files (`made_for`: the recipe the fix names, the default's where it names none), for the model's preset.
    BadInputError (one line) otherwise."""
    if made_for != recipe:
        raise BadInputError(f"--fix {path} is a fix of {made_for}'s files; a {recipe} kit takes a `cpdebug fix "
                            f"--recipe {recipe}` folder (or give --recipe {made_for})")
    if doc.get("preset") not in (None, model.model_name, Path(model.model_name).stem):
        raise BadInputError(f"{path} fixes the {doc.get('preset')} model; give its model options "
                            f"(--preset {doc.get('preset')}, or its --config and --checkpoint)")


def model_config(recipe: "Recipe", name: str):
    """The model config of preset or config file `name` in `recipe` (its `kit` plug-in's `model_config`)."""
    return recipe.plugin("kit").model_config(name)


def write_npz_inputs(tmp: Path, m: kf.Manifest) -> None:
    """Each frame's inputs of each stage as one .npz (`kit_files.onnx_inputs`), as `bisect --onnx … --inputs` reads
    them: the raw files' bytes, keyed by the graph's input names."""
    import numpy as np

    for stage in m.stages:
        for fr in m.frames:
            arrays = {t.name: np.fromfile(tmp / kf.input_raw(fr.id, stage.name, t.name), dtype=np.dtype(t.dtype))
                      .reshape(t.shapes[fr.id]) for t in stage.inputs}
            np.savez(tmp / kf.onnx_inputs(fr.id, stage.name), **arrays)
