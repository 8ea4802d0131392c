"""Write a kit for the target (`cpdebug trt-kit`): the ONNX files, every stage's exact inputs per frame, the
reference's outputs, the scripts and the manifest — needs no TensorRT. What a recipe puts in is a `KitContent`
(the recipe's `kit` plug-in: CenterPoint's pair in `recipes/centerpoint/kit.py`, TransFusion-L's one graph in
`recipes/transfusion/kit.py`); the rest is written once, here.

The reference runs as bisect's does (the model in PyTorch on the CPU, deterministic; each frame's stage inputs as
`recipes/centerpoint/subject.py` makes them), so `bisect --points KIT/frames/<frame>.npy --backends
torch,trt-fp16@KIT` feeds its first stage byte for byte what the target ran and finds the frame by that feed's
hash. The target runs every stage on the reference's inputs (it has no cp_debug to glue its own): later stages'
errors are then that stage's own. The folder is written whole: into a temporary sibling, renamed at the end.
"""

from __future__ import annotations

import datetime as _dt
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cp_debug.backends.kit import kit_files as kf
from cp_debug.errors import BadInputError
from cp_debug.kit.content import (KIT_PRECISIONS, KitContent, KitRequest, ReferenceRun,  # noqa: F401 (callers' names)
                                   frame_scans, model_config, torch_reference, write_npz_inputs)

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import onnx

    from cp_debug.data.frames import Frame
    from cp_debug.recipe_contract.recipe import Recipe

@dataclass(frozen=True)
class KitSummary:
    """What was written (for the terminal and `--json`)."""

    out: Path
    frames: tuple[str, ...]
    stages: tuple[str, ...]
    precisions: tuple[str, ...]
    held_precision: str
    files: int
    bytes: int
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict:
        return {"out": str(self.out), "frames": list(self.frames), "stages": list(self.stages),
                "precisions": list(self.precisions), "held_precision": self.held_precision, "files": self.files,
                "bytes": self.bytes, "notes": list(self.notes)}


def check_request(req: KitRequest) -> None:
    """What can be wrong before anything is loaded, in one line."""
    bad = [p for p in req.precisions if p not in KIT_PRECISIONS]
    if bad or not req.precisions:
        raise BadInputError(f"--precision {', '.join(bad) or '(none)'}: a kit runs {', '.join(KIT_PRECISIONS)}")
    if req.out.exists() and not req.force:
        raise BadInputError(f"{req.out} exists: give another --out, or --force to replace it")
    if req.out.exists() and not req.out.is_dir():
        raise BadInputError(f"{req.out} is a file: --out names the kit's folder")
    for p in req.points:
        if not Path(p).is_file():
            raise BadInputError(f"--points {p} is not a file")
    if req.onnx_dir is not None:  # before the reference runs: a folder without the pair is known now
        where = "--fix" if req.source_kind == "fix" else "--onnx-dir"
        if not Path(req.onnx_dir).is_dir():
            raise BadInputError(f"{where} {req.onnx_dir} is not a folder")
        if not any(Path(req.onnx_dir).glob("*.onnx")):
            expected = req.recipe.plugin("kit").DEPLOYED_FILES
            raise BadInputError(f"{where} {req.onnx_dir} holds no .onnx file (expected the deployed {expected})")


def write_kit(req: KitRequest, progress=None) -> KitSummary:
    """Run the reference over the frames and write the kit to `req.out`, whole or not at all."""
    check_request(req)
    step = progress.step if progress is not None else _no_step
    kit = req.recipe.plugin("kit")
    content_of = kit.content
    req.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=req.out.parent, prefix=f".{req.out.name}.", suffix=".tmp"))
    try:
        with step("running the reference over the frames"):
            content = content_of(req)
        with step("writing the ONNX files"):
            held, notes = _convert(req, content.write_onnx(tmp), tmp)
        with step("writing inputs and reference outputs"):
            manifest = _write_frames(req, content, held, tmp)
            if content.npz:
                write_npz_inputs(tmp, manifest)
            if content.extra is not None:
                content.extra(tmp, manifest)
        from cp_debug.kit.scripts import polygraphy_script, readme, trtexec_script

        for name, text in ((kf.TRTEXEC_SCRIPT, trtexec_script(manifest, kit)),
                           (kf.POLYGRAPHY_SCRIPT, polygraphy_script(manifest, kit)),
                           (kf.README, readme(manifest, kit))):
            (tmp / name).write_text(text)
            (tmp / name).chmod(0o755 if name.endswith(".sh") else 0o644)
        files = {rel: kf.sha256_file(tmp / rel) for rel in _listing(tmp)}
        manifest = _with_files(manifest, files)
        from cp_debug.files import write_json

        write_json(tmp / kf.MANIFEST, manifest)
        _put_in_place(tmp, req.out)
        tmp = None
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    size = sum((req.out / rel).stat().st_size for rel in files)
    return KitSummary(req.out, tuple(f.token for f in manifest.frames), tuple(s.name for s in manifest.stages),
                      manifest.precisions, held, len(files) + 1, size, tuple(content.notes + notes))


# -- the ONNX files --------------------------------------------------------------------------------------------
def _convert(req: KitRequest, models: dict[str, "onnx.ModelProto"], tmp: Path) -> tuple[str, list[str]]:
    """Per precision the files do not hold, their converted copy. Returns the precision the files hold, and notes."""
    from cp_debug.graph.onnx_files import save_onnx
    from cp_debug.precision.held import file_precision

    notes = []
    held_each = {name: file_precision(model) for name, model in models.items()}
    held = next((p for p in ("int8", "fp16") if p in held_each.values()), "fp32")
    for p in req.precisions:
        if p == held:
            continue
        if p == "fp16" and held == "fp32":
            from cp_debug.precision.fp16 import convert_to_fp16

            (tmp / p).mkdir(exist_ok=True)
            for name, model in models.items():  # past 2 GiB its weights in the data file beside it
                save_onnx(convert_to_fp16(model), tmp / kf.onnx_path(p, name, held))
            notes.append("fp16/: the ONNX converted to FP16 by cp_debug's transform (every node; float32 at the "
                         "graph's inputs and outputs), as trt-fp16 and ort-*-fp16 convert it")
            continue
        each = ", ".join(f"{k}: {v}" for k, v in held_each.items())
        raise BadInputError(f"--precision {p}: the pair holds {held} ({each}); "
                            f"a {p} kit needs a pair that holds {p} (int8: a Q/DQ pair from `cpdebug quantize`)")
    return held, notes


# -- inputs, reference outputs, manifest -------------------------------------------------------------------------
def _write_frames(req: KitRequest, content: KitContent, held: str, tmp: Path) -> kf.Manifest:
    import numpy as np
    from polygraphy.json import save_json
    from polygraphy.logger import G_LOGGER

    from cp_debug.compare.diff import default_tolerance

    scans, runs = content.scans, content.runs
    top = {st.name: _io_dtypes(tmp / f"{st.name}.onnx") for st in content.stages}
    frames = []
    for k, (token, loaded) in enumerate(scans):
        fid = kf.frame_id(k)
        if loaded.points is None:  # a sample of a model that reads no points: its inputs' .npz is the frame's file
            frames.append(kf.KitFrame(fid, token, loaded.source, kf.onnx_inputs(fid, content.stages[0].name)))
            continue
        (tmp / "frames").mkdir(exist_ok=True)
        np.save(tmp / "frames" / f"{fid}.npy", np.ascontiguousarray(loaded.points, dtype=np.float32))
        frames.append(kf.KitFrame(fid, token, loaded.source, f"frames/{fid}.npy"))
    stages = []
    profile = {}
    for i, st in enumerate(content.stages):
        dtypes = top[st.name]
        ins, outs = [], []
        for names, kind, values_of in ((st.input_names, "input", lambda r, i=i: r.feeds[i]),
                                       (st.output_names, "output", lambda r, i=i: r.outputs[i])):
            for name in names:
                shapes, hashes = {}, {}
                for fr, run in zip(frames, runs):
                    arr = np.ascontiguousarray(np.asarray(values_of(run)[name]), dtype=dtypes[name])
                    rel = (kf.input_raw if kind == "input" else kf.reference_raw)(fr.id, st.name, name)
                    (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                    arr.tofile(tmp / rel)  # trtexec's loadFromFile reads the raw bytes (sampleUtils.cpp)
                    shapes[fr.id] = tuple(int(d) for d in arr.shape)
                    if kind == "input":
                        hashes[fr.id] = kf.array_sha256(arr)
                (ins if kind == "input" else outs).append(kf.KitTensor(name, np.dtype(dtypes[name]).name, shapes,
                                                                       hashes))
        feeds = [{t.name: np.ascontiguousarray(np.asarray(run.feeds[i][t.name]), dtype=dtypes[t.name]) for t in ins}
                 for run in runs]
        with G_LOGGER.verbosity(G_LOGGER.CRITICAL + 1):  # its "Saving …" line is not ours to print
            save_json(feeds, str(tmp / kf.polygraphy_inputs(st.name)), description="cp_debug kit inputs")
        prof = content.profile(i, [{t.name: t.shapes[f.id] for t in ins} for f in frames])
        profile[st.name] = {n: r.to_json() for n, r in prof.items()}
        stages.append(kf.KitStage(st.name, tuple(ins), tuple(outs)))
    from cp_debug import __version__

    tol = {p: {"atol": t.atol, "rtol": t.rtol, "max_share": t.max_share}
           for p in req.precisions for t in [default_tolerance(p)]}
    source = {"kind": req.source_kind, "path": str(req.onnx_dir) if req.onnx_dir is not None else None,
              **(req.graph.to_json() if req.graph is not None else {}), "recipe": req.recipe.name}
    data = tuple(sorted(str(f.relative_to(tmp)) for f in tmp.rglob("*.onnx.data")))  # external data, past 2 GiB
    return kf.Manifest(__version__, _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                       req.model.to_json(), source, held, tuple(dict.fromkeys(req.precisions)), tuple(frames),
                       tuple(stages), profile, tol, {}, data)


def _io_dtypes(path: Path) -> dict[str, "np.dtype"]:
    """Each graph input's and output's numpy dtype, as the file declares it (what trtexec reads and writes)."""
    import onnx
    from onnx.helper import tensor_dtype_to_np_dtype

    g = onnx.load(str(path), load_external_data=False).graph
    return {v.name: tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type) for v in list(g.input) + list(g.output)}


def _with_files(m: kf.Manifest, files: dict[str, str]) -> kf.Manifest:
    from dataclasses import replace

    return replace(m, files=files)


def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _put_in_place(tmp: Path, out: Path) -> None:
    """Rename the finished folder onto `out` (an old kit is moved aside first and removed after)."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
    try:
        tmp.rename(out)
    except OSError:
        if old is not None:
            old.rename(out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


class _no_step:
    def __init__(self, text: str):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def frames_of(scenes: Path | None, n: int | None, cfg_name: str, recipe: "Recipe") -> tuple["Frame", ...]:
    """The --scenes / --n frames (data/frames.py) of `recipe`'s model `cfg_name`, or none."""
    from cp_debug.data.frames import from_scenes, held_out

    if scenes is not None and n is not None:
        raise BadInputError("give --scenes DIR or --n N, not both")
    if scenes is not None:
        return tuple(from_scenes(scenes, model_config(recipe, cfg_name), task="write a kit for"))
    if n is not None:
        if n < 1:
            raise BadInputError(f"--n must be at least 1, got {n}")
        return tuple(held_out(n))
    return ()
