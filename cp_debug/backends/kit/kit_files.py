"""A kit for the target (issue 31): its layout, its manifest, and the checks that reading it back makes.

One home for both sides: `cp_debug/kit/` writes a kit (`cpdebug trt-kit`), `kit_runner.py` serves what the target
computed from it. The layout, relative to KIT (a frame's folder is its id, `frame_000`, …; its token is in the
manifest):

    manifest.json                             `cp_debug.trt_kit/1`: version, model, frames, stages (inputs, outputs,
                                              shapes per frame), the precisions and their files, the profile, the
                                              tolerances, the sha256 of every file below
    pts_voxel_encoder.onnx, pts_backbone_neck_head.onnx
                                              the pair as given (so `ort@KIT` is also a plain deployed folder); any
                                              model's one graph (`trt-kit --torch/--onnx`): <stage>.onnx, its
                                              weights past 2 GiB in <stage>.onnx.data beside it
    <precision>/<stage>.onnx                  a precision the pair does not hold, converted by cp_debug's transform
                                              (TensorRT 11 takes precision from the ONNX file only)
    frames/<frame>.npy                        the frame's points as the model reads them (`bisect --points`)
    inputs/<frame>/<stage>/<input>.raw        trtexec --loadInputs: raw bytes, C order, the ONNX input's dtype
    inputs/<stage>.polygraphy.json            polygraphy --load-inputs: one feed per frame, in manifest order
    inputs/<frame>/<stage>.npz                a one-graph kit (TransFusion-L's, any model's): the frame's inputs
                                              for `bisect --onnx KIT/<stage>.onnx --inputs` (or --torch); any
                                              model's frame is a sample, this its file (no frames/<frame>.npy)
    reference/<frame>/<stage>/<output>.raw    trtexec --loadRefOutputs (TensorRT >= 11.1): the reference's outputs
    run_trtexec.sh, run_polygraphy.sh, README.md
    results/<precision>/ran.sha256            written on the target: the sha256 of the ONNX and input files it ran
    results/<precision>/polygraphy/<stage>.json   polygraphy --save-outputs (a RunResults), frames as iterations
    results/<precision>/trtexec/<frame>/<stage>/  trtexec's numpy debug-tensor dumps (NNNN_<tensor>.npy), layers.json
                                              (--exportLayerInfo), outputs.json (--exportOutput), trtexec.log;
                                              the engines beside: results/<precision>/trtexec/<stage>.engine

Reading back refuses, in one line (exit 2, before anything is written), a kit whose files do not match their
hashes, results computed from another ONNX file or other inputs, and a missing or truncated results file.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from cp_debug.errors import BadInputError
from cp_debug.files import sha256_file

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from cp_debug.backends.spec import BackendSpec
    from cp_debug.data.frames import Frame

SCHEMA = "cp_debug.trt_kit/1"
MANIFEST = "manifest.json"
RAN = "ran.sha256"
TRTEXEC_SCRIPT = "run_trtexec.sh"
POLYGRAPHY_SCRIPT = "run_polygraphy.sh"
README = "README.md"
TRTEXEC_LAYERS = "layers.json"  # --exportLayerInfo, in each frame/stage folder of trtexec's results
TRTEXEC_OUTPUTS = "outputs.json"  # --exportOutput
TRTEXEC_LOG = "trtexec.log"


def is_kit(folder: Path | None) -> bool:
    """A folder holding a kit's manifest (what makes `trt-*@DIR` read results instead of building an engine)."""
    return folder is not None and (Path(folder) / MANIFEST).is_file()


def frame_id(index: int) -> str:
    return f"frame_{index:03d}"


def onnx_path(precision: str, stage: str, held: str) -> str:
    """The kit file a precision runs for `stage`: the pair itself where it holds that precision, else the
    converted copy under `<precision>/`."""
    return f"{stage}.onnx" if precision == held else f"{precision}/{stage}.onnx"


def input_raw(frame: str, stage: str, name: str) -> str:
    return f"inputs/{frame}/{stage}/{safe_name(name)}.raw"


def reference_raw(frame: str, stage: str, name: str) -> str:
    return f"reference/{frame}/{stage}/{safe_name(name)}.raw"


def onnx_inputs(frame: str, stage: str) -> str:
    """A frame's inputs of `stage` as one .npz (`bisect --onnx … --inputs`; TransFusion-L's kit writes them)."""
    return f"inputs/{frame}/{stage}.npz"


def polygraphy_inputs(stage: str) -> str:
    return f"inputs/{stage}.polygraphy.json"


def polygraphy_results(precision: str, stage: str) -> str:
    return f"results/{precision}/polygraphy/{stage}.json"


def trtexec_folder(precision: str) -> str:
    return f"results/{precision}/trtexec"


def trtexec_results(precision: str, frame: str, stage: str) -> str:
    """Where `run_trtexec.sh` runs `stage` on `frame` (trtexec writes its debug dumps into its working folder):
    the dumps, TRTEXEC_LAYERS, TRTEXEC_OUTPUTS and TRTEXEC_LOG."""
    return f"{trtexec_folder(precision)}/{frame}/{stage}"


def ran_file(precision: str) -> str:
    return f"results/{precision}/{RAN}"


def safe_name(name: str) -> str:
    """A tensor name as a file name: characters other than letters, digits, `._-` become `_`."""
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)


def array_sha256(arr: "np.ndarray") -> str:
    """The sha256 of an array's bytes as a raw input file holds them (C order, its own dtype)."""
    import numpy as np

    return hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()


# -- the manifest ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class KitTensor:
    """A stage input or output: its ONNX name, dtype (numpy's name) and, per frame id, its shape (and for inputs the
    sha256 of its bytes)."""

    name: str
    dtype: str
    shapes: dict[str, tuple[int, ...]]
    sha256: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "shapes": {k: list(v) for k, v in self.shapes.items()},
                "sha256": dict(self.sha256)}

    @classmethod
    def from_json(cls, d: dict) -> "KitTensor":
        return cls(d["name"], d["dtype"], {k: tuple(v) for k, v in d["shapes"].items()}, dict(d.get("sha256", {})))


@dataclass(frozen=True)
class KitStage:
    name: str
    inputs: tuple[KitTensor, ...]
    outputs: tuple[KitTensor, ...]

    def to_json(self) -> dict:
        return {"name": self.name, "onnx": f"{self.name}.onnx", "inputs": [t.to_json() for t in self.inputs],
                "outputs": [t.to_json() for t in self.outputs]}

    @classmethod
    def from_json(cls, d: dict) -> "KitStage":
        return cls(d["name"], tuple(KitTensor.from_json(t) for t in d["inputs"]),
                   tuple(KitTensor.from_json(t) for t in d["outputs"]))


@dataclass(frozen=True)
class KitFrame:
    id: str
    token: str
    source: str  # what the points are, in words (a file, a synthetic seed)
    points: str  # the kit file of its points

    def to_json(self) -> dict:
        return {"id": self.id, "token": self.token, "source": self.source, "points": self.points}

    @classmethod
    def from_json(cls, d: dict) -> "KitFrame":
        return cls(d["id"], d["token"], d["source"], d["points"])


@dataclass(frozen=True)
class Manifest:
    """What a kit holds (`manifest.json`). `files`: kit path -> sha256 of every file written with the kit."""

    cp_debug: str
    created: str
    model_record: dict
    source: dict  # where the ONNX came from: {"kind": "export" | "deployed" | "fix", "path": ..., "recipe": ...}
    held_precision: str  # the precision the pair holds itself
    precisions: tuple[str, ...]  # the precisions the scripts run
    frames: tuple[KitFrame, ...]
    stages: tuple[KitStage, ...]
    profile: dict  # stage -> input -> {min, opt, max}
    tolerance: dict  # precision -> {atol, rtol, max_share}: cp_debug's defaults, used by --loadRefOutputs
    files: dict[str, str]
    onnx_data: tuple[str, ...] = ()  # the ONNX files' external data (`<file>.onnx.data`: weights past 2 GiB)

    def to_json(self) -> dict:
        return {"schema": SCHEMA, "cp_debug": self.cp_debug, "created": self.created,
                "model_record": self.model_record, "source": self.source, "held_precision": self.held_precision,
                "precisions": {p: {s.name: onnx_path(p, s.name, self.held_precision) for s in self.stages}
                               for p in self.precisions},
                "frames": [f.to_json() for f in self.frames], "stages": [s.to_json() for s in self.stages],
                "profile": self.profile, "tolerance": self.tolerance, "files": dict(sorted(self.files.items())),
                "onnx_data": list(self.onnx_data)}

    @classmethod
    def from_json(cls, d: dict, where: Path) -> "Manifest":
        if d.get("schema") != SCHEMA:
            raise BadInputError(f"{where / MANIFEST} has schema {d.get('schema')!r}, not {SCHEMA!r}: write the kit "
                                "again with `cpdebug trt-kit`")
        try:
            return cls(d["cp_debug"], d["created"], d["model_record"], d["source"], d["held_precision"],
                       tuple(d["precisions"]), tuple(KitFrame.from_json(f) for f in d["frames"]),
                       tuple(KitStage.from_json(s) for s in d["stages"]), d["profile"], d["tolerance"],
                       dict(d["files"]), tuple(d.get("onnx_data", ())))
        except (KeyError, TypeError) as err:
            raise BadInputError(f"{where / MANIFEST} lacks {err}: write the kit again with `cpdebug trt-kit`") from None

    def stage(self, name: str) -> KitStage:
        for s in self.stages:
            if s.name == name:
                return s
        raise BadInputError(f"the kit has no stage {name!r} (it holds {', '.join(s.name for s in self.stages)})")

    def ran_files(self, precision: str) -> list[str]:
        """What the target's run of `precision` reads: the ONNX files and the inputs (hashed in ran.sha256)."""
        onnx = [onnx_path(precision, s.name, self.held_precision) for s in self.stages]
        onnx += [f"{f}.data" for f in onnx if f"{f}.data" in self.onnx_data]  # what the target read of the weights
        inputs = [polygraphy_inputs(s.name) for s in self.stages]
        raws = [input_raw(f.id, s.name, t.name) for f in self.frames for s in self.stages for t in s.inputs]
        return onnx + inputs + raws


# -- opening a kit ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Kit:
    folder: Path
    manifest: Manifest


_OPENED: dict[tuple[str, float], Kit] = {}


def open_kit(folder: str | Path) -> Kit:
    """The kit in `folder`, its manifest read and every file it lists checked against its sha256 (once per process
    and manifest: bisect builds a runner per stage and per chunk of probes)."""
    root = Path(folder)
    path = root / MANIFEST
    try:
        key = (str(root.resolve()), path.stat().st_mtime)
    except OSError:
        raise BadInputError(f"{root} holds no {MANIFEST}: give a folder written by `cpdebug trt-kit --out KIT`"
                            ) from None
    if key in _OPENED:
        return _OPENED[key]
    try:
        doc = json.loads(path.read_text())
    except ValueError as err:
        raise BadInputError(f"{path} is not valid JSON ({err}): the kit is damaged; write it again") from None
    manifest = Manifest.from_json(doc, root)
    for rel, want in manifest.files.items():
        _check_hash(root, rel, want, "the kit")
    kit = Kit(root, manifest)
    _OPENED[key] = kit
    return kit


def _check_hash(root: Path, rel: str, want: str, what: str) -> None:
    p = root / rel
    if not p.is_file():
        raise BadInputError(f"{p} is missing from {what} (the manifest lists it): copy the whole kit back")
    if sha256_file(p) != want:
        raise BadInputError(f"{p} does not match {what}'s manifest (sha256 differs): the file was changed or "
                            "truncated; copy it again or write the kit again")


def check_ran(kit: Kit, precision: str) -> None:
    """The target's `ran.sha256` for `precision` names exactly the kit's ONNX and input files with their hashes: results
    of another ONNX file or of other inputs are refused."""
    m = kit.manifest
    if precision not in m.precisions:
        raise BadInputError(f"the kit in {kit.folder} was written for {', '.join(m.precisions)}, not {precision}: "
                            f"write a kit with --precision {precision}, or use trt-{m.precisions[0]}@{kit.folder}")
    path = kit.folder / ran_file(precision)
    if not path.is_file():
        raise BadInputError(f"{kit.folder} holds no results for {precision} ({path} is missing): run "
                            f"`bash {POLYGRAPHY_SCRIPT} {precision}` (or {TRTEXEC_SCRIPT}) on the target and copy "
                            "results/ back into the kit")
    ran: dict[str, str] = {}
    for line in path.read_text().splitlines():
        digest, _, name = line.strip().partition("  ")
        if digest and name:
            ran[name.removeprefix("./")] = digest
    for rel in m.ran_files(precision):
        want = m.files.get(rel)
        if rel not in ran:
            raise BadInputError(f"{path} does not list {rel}: these results were not computed from this kit; run "
                                "the kit's script on the target again")
        if ran[rel] != want:
            what = "another ONNX file" if rel.endswith(".onnx") else "other inputs"
            raise BadInputError(f"the results in {path.parent} were computed from {what} ({rel} on the target had "
                                f"sha256 {ran[rel][:12]}…, the kit's is {want[:12]}…): run this kit's script again")


def frames_of_kits(specs: Iterable["BackendSpec"], given: str | None) -> list["Frame"] | None:
    """The frames a run over several frames (sweep, eval) takes when a candidate is `trt-*@KIT`: the kit's own (its
    `frames/<frame>.npy`, tokens as in the manifest); None where no candidate is a kit. The target's results exist
    for the kit's frames only, so frames given as well (`given`: the option that gave them, e.g. "--scenes") and two
    kits of other frames are refused in one line."""
    from cp_debug.data.frames import Frame, PointFile

    kits = [open_kit(s.onnx_dir) for s in specs if s.kit]
    if not kits:
        return None
    first = kits[0]
    if given is not None:
        raise BadInputError(f"{given} and trt-*@{first.folder}: the target's results exist for the kit's "
                            f"{len(first.manifest.frames)} frame(s) only; drop {given} (the run takes the kit's)")
    hashes = [tuple(k.manifest.files[f.points] for f in k.manifest.frames) for k in kits]
    if len(set(hashes)) > 1:
        raise BadInputError(f"the kits {', '.join(str(k.folder) for k in kits)} hold other frames: give kits written "
                            "for the same frames (the same --points / --scenes at `cpdebug trt-kit`)")
    return [Frame(f.token, PointFile(str(first.folder / f.points))) for f in first.manifest.frames]
