"""The fuzz generator: damaged copies of every kind of input a user hands cpdebug, each with the commands that read it.

`Seeds.build(root)` makes the real files the project makes or ships — the tiny preset's deployed ONNX pair
(`cpdebug export`), a scene folder (`cpdebug scenes`), a point file in each format, the shipped demo checkpoint, a
shipped config with its `_base_`, a saved bisect report, a rosbag2 folder (sqlite3 and mcap) and a deployment's
prediction files. `cases(seeds, work, rng, per_kind)` mutates them with a seeded RNG into `Case`s: a kind, a
mutation name, the command lines that read the damaged input (`{OUT}` is each run's fresh output folder), the
environment, and whether the input is certainly unusable (`bad`: the run must end in exit 2 or 3) or may be fine.

Pickles that try to run code (a checkpoint, an info file, a results .pkl, an object .npy) would create
`MARKER` on loading: the runner asserts it never appears. A config's `custom_imports` names a module beside it
whose import would create the marker too.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MARKER_NAME = "CODE-WAS-EXECUTED"
KINDS = ("onnx", "points", "checkpoint", "config", "report", "sweep", "bag", "predictions", "options", "env")


@dataclass(frozen=True)
class Case:
    kind: str
    name: str  # the mutation: "onnx/truncated"
    commands: tuple[tuple[str, ...], ...]  # argv per command, "{OUT}" replaced by a fresh folder per run
    bad: bool = True  # the input cannot be used: every command must end in exit 2 or 3
    env: dict = field(default_factory=dict)
    note: str = ""  # what was done, for the report (the offset cut, the key renamed, ...)

    @property
    def label(self) -> str:
        return f"{self.name}{f' ({self.note})' if self.note else ''}"


class _Evil:
    """Unpickling this opens (creates) the marker file: code run from a user's file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


# -- the real files the mutations start from -----------------------------------------------------------------------
@dataclass
class Seeds:
    root: Path
    onnx: Path  # the tiny preset's deployed pair (random weights, seed 0)
    scenes: Path  # DIR/points/*.pcd.bin + DIR/infos.pkl
    bin: Path
    npy: Path
    pcd: Path
    checkpoint: Path
    configs: Path  # a copy of the shipped configs/ (tiny.py + _base_/)
    report: Path  # a bisect --json of the tiny preset
    bag: Path  # sqlite3 rosbag2 folder: clouds and DetectedObjects
    mcap: Path
    cuda_pred: Path  # CUDA-CenterPoint <token>.txt folder for `scenes`
    mmdet3d_pkl: Path
    detections_json: Path  # nuScenes submission format for eval --detections
    sweep: Path | None = None  # a finished sweep folder (built on demand: it costs a sweep)

    @property
    def marker(self) -> Path:
        return self.root / MARKER_NAME

    @classmethod
    def build(cls, root: Path, invoke) -> "Seeds":
        """`invoke(argv) -> exit code` runs cpdebug (in process); the files are made by its own commands."""
        from cp_debug.data.deployed_detections import write_cuda_centerpoint, write_mmdet3d_pkl
        from cp_debug.data.infos import read_infos
        from cp_debug.data.rosbag import Cloud, write_bag
        from cp_debug.lidar.boxes import Detections
        from cp_debug.models.centerpoint.presets import configs_dir, get_preset
        from cp_debug.models.centerpoint.source import shipped_checkpoint

        root.mkdir(parents=True, exist_ok=True)
        _ok(invoke, ["export", "--preset", "tiny", "--out", str(root / "onnx"), "-q"])
        _ok(invoke, ["scenes", "--preset", "tiny", "--n", "2", "--out", str(root / "scenes"), "-q"])
        _ok(invoke, ["bisect", "--preset", "tiny", "--backends", "ort,ort", "--no-local", "--no-noise-floor", "-q",
                     "--json", str(root / "run.json")], codes=(0, 1, 4))
        scenes = root / "scenes"
        bins = sorted((scenes / "points").glob("*.pcd.bin"))
        pts = np.fromfile(bins[0], np.float32).reshape(-1, 5)
        np.save(root / "scan.npy", pts)
        _write_pcd(root / "scan.pcd", pts[:2000])
        ckpt = root / "demo.pth"
        shutil.copyfile(shipped_checkpoint("demo"), ckpt)
        shutil.copytree(configs_dir(), root / "configs", ignore=shutil.ignore_patterns("__pycache__"))

        cfg = get_preset("tiny")
        samples = read_infos(scenes, class_names=cfg.class_names)
        dets = {s.token: Detections(s.boxes, np.full(len(s.boxes), 0.9, np.float32), s.labels, tuple(cfg.class_names))
                for s in samples}
        write_cuda_centerpoint(root / "cuda_pred", dets, cfg.class_names)
        write_mmdet3d_pkl(root / "results.pkl", dets)
        stamps = [1_700_000_000_000_000_000 + i * 100_000_000 for i in range(len(bins))]
        clouds = [Cloud(t, "base_link", np.fromfile(b, np.float32).reshape(-1, 5)) for t, b in zip(stamps, bins)]
        objects = [(t, dets[s.token]) for t, s in zip(stamps, samples)]
        write_bag(root / "bag", clouds, objects, cfg.class_names)
        write_bag(root / "bag_mcap", clouds, objects, cfg.class_names, storage="mcap")
        _write_submission(root / "results.json", dets)
        return cls(root, root / "onnx", scenes, bins[0], root / "scan.npy", root / "scan.pcd", ckpt,
                   root / "configs", root / "run.json", root / "bag", root / "bag_mcap", root / "cuda_pred",
                   root / "results.pkl", root / "results.json")

    def build_sweep(self, invoke) -> Path:
        if self.sweep is None:
            out = self.root / "sweep"
            _ok(invoke, ["sweep", "--preset", "tiny", "--backends", "torch,ort", "--n", "2", "--bisect-top", "0",
                         "--bootstrap", "0", "--no-html", "--shard-size", "1", "--out", str(out), "-q"],
                codes=(0, 1, 4))
            self.sweep = out
        return self.sweep


def _ok(invoke, argv, codes=(0,)) -> None:
    code = invoke(argv)
    if code not in codes:
        raise RuntimeError(f"making the fuzz seeds: cpdebug {' '.join(argv)} exited {code}")


def _write_pcd(path: Path, pts: np.ndarray, data: str = "binary") -> None:
    head = ("# .PCD v0.7\nVERSION 0.7\nFIELDS x y z intensity\nSIZE 4 4 4 4\nTYPE F F F F\nCOUNT 1 1 1 1\n"
            f"WIDTH {len(pts)}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {len(pts)}\nDATA {data}\n")
    body = pts[:, :4].astype(np.float32)
    if data == "ascii":
        raw = "".join(" ".join(f"{v:.4f}" for v in row) + "\n" for row in body).encode()
    else:
        raw = body.tobytes()
    path.write_bytes(head.encode() + raw)


def _write_submission(path: Path, dets) -> None:
    names = {0: "car", 1: "truck", 2: "bus", 3: "bicycle", 4: "pedestrian"}
    results = {}
    for token, d in dets.items():
        results[token] = [{"sample_token": token, "translation": [float(b[0]), float(b[1]), float(b[2] + b[5] / 2)],
                           "size": [float(b[4]), float(b[3]), float(b[5])],
                           "rotation": [float(np.cos(b[6] / 2)), 0.0, 0.0, float(np.sin(b[6] / 2))],
                           "velocity": [0.0, 0.0], "detection_name": names.get(int(lab), "car"),
                           "detection_score": float(s), "attribute_name": ""}
                          for b, s, lab in zip(d.boxes, d.scores, d.labels)]
    path.write_text(json.dumps({"meta": {"use_lidar": True}, "results": results}))


def pick(rng, seq):
    """One element of `seq` (of any types: numpy's choice would make an array of them)."""
    return seq[int(rng.integers(0, len(seq)))]


# -- byte-level damage -----------------------------------------------------------------------------------------------
def truncate(src: Path, dst: Path, rng) -> str:
    data = src.read_bytes()
    cut = int(rng.integers(0, max(1, len(data))))
    dst.write_bytes(data[:cut])
    return f"cut at {cut} of {len(data)}"


def flip_bytes(src: Path, dst: Path, rng) -> str:
    data = bytearray(src.read_bytes())
    n = int(rng.integers(1, 64))
    for i in rng.integers(0, len(data), n):
        data[i] = int(rng.integers(0, 256))
    dst.write_bytes(bytes(data))
    return f"{n} bytes changed"


def garbage(dst: Path, rng, size: int | None = None) -> str:
    n = int(size if size is not None else rng.integers(1, 4096))
    dst.write_bytes(rng.integers(0, 256, n, dtype=np.uint8).tobytes())
    return f"{n} random bytes"


def evil_pickle(dst: Path, marker: Path, wrap=lambda e: e) -> None:
    dst.write_bytes(pickle.dumps(wrap(_Evil(marker)), protocol=2))


# -- ONNX files and deployed folders ---------------------------------------------------------------------------------
ENCODER, BACKBONE = "pts_voxel_encoder.onnx", "pts_backbone_neck_head.onnx"


def _onnx_edit(src: Path, dst: Path, edit) -> str:
    import onnx

    model = onnx.load(str(src))
    note = edit(model.graph, model)
    onnx.save(model, str(dst))
    return note


def _rename(graph, old: str, new: str) -> None:
    for node in graph.node:
        node.input[:] = [new if n == old else n for n in node.input]
        node.output[:] = [new if n == old else n for n in node.output]
    for vi in list(graph.input) + list(graph.output) + list(graph.value_info):
        if vi.name == old:
            vi.name = new


def onnx_mutations(rng, marker: Path):
    """name → (bad, mutate(src, dst) -> note) for one ONNX file."""
    def unknown_op(g, m):
        node = g.node[int(rng.integers(0, len(g.node)))]
        node.op_type = "FuzzUnknownOp"
        return node.name

    def wrong_opset(g, m):
        v = int(pick(rng, [1, 3, 99]))
        for o in m.opset_import:
            if o.domain in ("", "ai.onnx"):
                o.version = v
        return f"opset {v}"

    def renamed_input(g, m):
        old = g.input[int(rng.integers(0, len(g.input)))].name
        _rename(g, old, old + "_renamed")
        return old

    def renamed_output(g, m):
        old = g.output[int(rng.integers(0, len(g.output)))].name
        _rename(g, old, old + "_renamed")
        return old

    def missing_input(g, m):
        i = int(rng.integers(0, len(g.input)))
        name = g.input[i].name
        del g.input[i]
        return name

    def missing_output(g, m):
        i = int(rng.integers(0, len(g.output)))
        name = g.output[i].name
        del g.output[i]
        return name

    def no_outputs(g, m):
        names = [o.name for o in g.output]
        del g.output[:]
        return ", ".join(names)

    def wrong_input_type(g, m):
        g.input[0].type.tensor_type.elem_type = 7  # int64
        return g.input[0].name

    def wrong_input_rank(g, m):
        dims = g.input[0].type.tensor_type.shape.dim
        dims.add().dim_value = 3
        return g.input[0].name

    return {
        "truncated": (True, lambda s, d: truncate(s, d, rng)),
        "random_bytes": (False, lambda s, d: flip_bytes(s, d, rng)),
        "garbage": (True, lambda s, d: garbage(d, rng)),
        "empty": (True, lambda s, d: (d.write_bytes(b""), "0 bytes")[1]),
        "pickle": (True, lambda s, d: (evil_pickle(d, marker), "a pickle")[1]),
        "unknown_op": (True, lambda s, d: _onnx_edit(s, d, unknown_op)),
        "wrong_opset": (True, lambda s, d: _onnx_edit(s, d, wrong_opset)),
        "renamed_input": (False, lambda s, d: _onnx_edit(s, d, renamed_input)),
        "renamed_output": (False, lambda s, d: _onnx_edit(s, d, renamed_output)),
        "missing_input": (True, lambda s, d: _onnx_edit(s, d, missing_input)),
        "missing_output": (False, lambda s, d: _onnx_edit(s, d, missing_output)),
        "no_outputs": (True, lambda s, d: _onnx_edit(s, d, no_outputs)),
        "wrong_input_type": (True, lambda s, d: _onnx_edit(s, d, wrong_input_type)),
        "wrong_input_rank": (True, lambda s, d: _onnx_edit(s, d, wrong_input_rank)),
    }


def onnx_cases(seeds: Seeds, work: Path, rng, names=None) -> list[Case]:
    muts = onnx_mutations(rng, seeds.marker)
    out = []
    for name in names or muts:
        bad, mutate = muts[name]
        small = name in ("wrong_input_type", "wrong_input_rank", "no_outputs")  # edits of the encoder's interface
        which = ENCODER if small else str(pick(rng, [ENCODER, BACKBONE]))
        d = work / f"onnx-{name}-{len(out)}"
        shutil.copytree(seeds.onnx, d)
        note = f"{which}: {mutate(seeds.onnx / which, d / which)}"
        out.append(Case("onnx", f"onnx/{name}", deployed_commands(d) + onnx_file_commands(d / which), bad, note=note))
    # the folder itself: a file missing, the two files swapped, a file where the folder should be, nothing there
    d = work / "onnx-missing-file"
    shutil.copytree(seeds.onnx, d)
    gone = str(pick(rng, [ENCODER, BACKBONE]))
    (d / gone).unlink()
    out.append(Case("onnx", "onnx/missing_file", deployed_commands(d), note=gone))
    d = work / "onnx-swapped"
    d.mkdir()
    shutil.copyfile(seeds.onnx / ENCODER, d / BACKBONE)
    shutil.copyfile(seeds.onnx / BACKBONE, d / ENCODER)
    out.append(Case("onnx", "onnx/swapped", deployed_commands(d)))
    f = work / "onnx-is-a-file"
    f.write_bytes(b"not a folder")
    out.append(Case("onnx", "onnx/folder_is_a_file", deployed_commands(f)))
    out.append(Case("onnx", "onnx/folder_missing", deployed_commands(work / "no-such-folder")))
    return out


def deployed_commands(d: Path) -> tuple[tuple[str, ...], ...]:
    tiny = ("--preset", "tiny")
    return (("bisect", *tiny, "--backends", f"ort,ort@{d}", "-q", "--json", "{OUT}/run.json"),
            ("sweep", *tiny, "--backends", f"torch,ort@{d}", "--n", "1", "--bisect-top", "0", "--bootstrap", "0",
             "--no-html", "--out", "{OUT}/sweep", "-q"),
            ("eval", *tiny, "--backends", f"torch,ort@{d}", "--n", "1", "--json", "{OUT}/eval.json", "-q"),
            ("bench", *tiny, "--backends", f"ort@{d}", "--repeat", "1", "--warmup", "0", "-q"),
            ("infer", *tiny, "--encoder", "ort", "--backbone", "ort", "--onnx-dir", str(d), "--out", "{OUT}/i.npz",
             "-q"))


def onnx_file_commands(f: Path) -> tuple[tuple[str, ...], ...]:
    if f.name != ENCODER:  # the backbone alone takes a minute of keep-fp32 search: the small file stands for both
        return (("bisect", "--onnx", str(f), "--backends", "ort,ort", "--no-local", "-q"),)
    return (("bisect", "--onnx", str(f), "--backends", "ort,ort-cpu-fp16", "-q", "--json", "{OUT}/run.json"),
            ("keep-fp32", "--onnx", str(f), "-q", "--json", "{OUT}/keep.json"))


# -- point files -----------------------------------------------------------------------------------------------------
def points_cases(seeds: Seeds, work: Path, rng, names=None) -> list[Case]:  # noqa: C901, PLR0915 - a small function per mutation
    pts = np.fromfile(seeds.bin, np.float32).reshape(-1, 5)

    def f(name, suffix):
        return work / f"pts-{name}{suffix}"

    def partial_rows():
        p = f("partial", ".bin")
        cut = 20 * int(rng.integers(1, 100)) + 4 * int(rng.integers(1, 5))  # whole rows of 5 floats and 1-4 more
        p.write_bytes(seeds.bin.read_bytes()[:cut])
        return p, True, f"{p.stat().st_size} bytes"

    def nan_some():
        p = f("nan-some", ".npy")
        a = pts.copy()
        a[rng.random(len(a)) < 0.3, int(rng.integers(0, 5))] = np.nan
        np.save(p, a)
        return p, False, "30% rows with a NaN"

    def nan_all():
        p = f("nan-all", ".bin")
        np.full_like(pts[:100], np.nan).tofile(p)
        return p, True, "every value NaN"

    def inf_huge():
        p = f("huge", ".npy")
        np.save(p, np.where(rng.random(pts.shape) < 0.5, np.float32(3e38), pts).astype(np.float32))
        return p, False, "values near float32's max"

    def object_npy():
        p = f("object", ".npy")
        a = np.empty(2, dtype=object)
        a[0], a[1] = _Evil(seeds.marker), "x"
        np.save(p, a, allow_pickle=True)
        return p, True, "object array whose pickle opens the marker"

    def npz_no_points():
        p = f("nokey", ".npz")
        np.savez(p, cloud=pts)
        return p, True, "key 'cloud' instead of 'points'"

    def npz_object():
        p = f("npzobj", ".npz")
        a = np.empty(1, dtype=object)
        a[0] = _Evil(seeds.marker)
        np.savez(p, points=a)
        return p, True, "points: a pickled object"

    def wrong_shape():
        p = f("shape", ".npy")
        shape = [(len(pts),), (len(pts), 2), (2, len(pts), 5), (0, 5), (len(pts), 0)][int(rng.integers(0, 5))]
        np.save(p, np.zeros(shape, np.float32) if 0 in shape else rng.random(shape).astype(np.float32))
        return p, True, f"shape {shape}"

    def int_dtype():
        p = f("ints", ".npy")
        np.save(p, (pts * 100).astype(np.int64))
        return p, False, "int64 points"

    def complex_dtype():
        p = f("complex", ".npy")
        np.save(p, pts.astype(np.complex64))
        return p, True, "complex64 points"

    def empty_bin():
        p = f("empty", ".bin")
        p.write_bytes(b"")
        return p, True, "0 bytes"

    def pcd_compressed():
        p = f("compressed", ".pcd")
        head = seeds.pcd.read_bytes().split(b"DATA binary\n")[0]
        p.write_bytes(head + b"DATA binary_compressed\n" + rng.integers(0, 256, 400, dtype=np.uint8).tobytes())
        return p, True, "binary_compressed"

    def pcd_garbage_header():
        p = f("badhead", ".pcd")
        data = seeds.pcd.read_bytes()
        lines = data.split(b"\n")
        i = int(rng.integers(1, 11))
        lines[i] = pick(rng, [b"SIZE 4 4", b"TYPE Q Q Q Q", b"COUNT x 1 1 1", b"WIDTH -5", b"POINTS 99999999",
                               b"FIELDS", b"DATA json", b"\xff\xfe\x00"])
        p.write_bytes(b"\n".join(lines))
        return p, True, f"line {i}: {lines[i][:20]!r}"

    def pcd_ascii_bad():
        p = f("ascii", ".pcd")
        _write_pcd(p, pts[:50], data="ascii")
        head, rows = p.read_bytes().split(b"DATA ascii\n")
        rows = rows.split(b"\n")
        i = int(rng.integers(0, 50))
        rows[i] = b"zz " + rows[i].split(b" ", 1)[1]
        p.write_bytes(head + b"DATA ascii\n" + b"\n".join(rows))
        return p, True, "ascii rows with non-numbers"

    def wrong_suffix():
        p = f("suffix", ".txt")
        shutil.copyfile(seeds.bin, p)
        return p, True, ".txt"

    def a_folder():
        p = f("dir", ".bin")
        p.mkdir()
        return p, True, "a folder"

    def missing():
        return f("missing", ".bin"), True, "no such file"

    muts = {k: v for k, v in locals().items() if callable(v) and k not in ("f",)}
    for suffix, src in ((".npy", seeds.npy), (".pcd", seeds.pcd)):  # the two files cut, and random bytes instead
        muts[f"truncated_{suffix[1:]}"] = lambda s=suffix, src=src: (f("trunc", s), True, truncate(src, f("trunc", s),
                                                                                                    rng))
        muts[f"garbage_{suffix[1:]}"] = lambda s=suffix: (f("garbage", s), True, garbage(f("garbage", s), rng))
    out = []
    for name in names or muts:
        p, bad, note = muts[name]()
        out.append(Case("points", f"points/{name}", points_commands(p, seeds, work, name), bad, note=note))
    return out


def points_commands(p: Path, seeds: Seeds, work: Path, name: str) -> tuple[tuple[str, ...], ...]:
    tiny = ("--preset", "tiny")
    cmds = [("infer", *tiny, "--points", str(p), "--out", "{OUT}/i.npz", "-q"),
            ("bisect", *tiny, "--points", str(p), "--backends", "torch,ort", "--no-local", "-q"),
            ("bench", *tiny, "--points", str(p), "--backends", "ort", "--repeat", "1", "--warmup", "0", "-q"),
            ("export", *tiny, "--points", str(p), "--out", "{OUT}/onnx", "-q")]
    if p.suffix == ".bin" and p.is_file():  # the same damage inside a scene folder: eval and sweep --scenes
        d = work / f"scenes-{name}"
        shutil.copytree(seeds.scenes, d)
        first = sorted((d / "points").glob("*.pcd.bin"))[0]
        shutil.copyfile(p, first)
        cmds += [("eval", *tiny, "--backends", "torch", "--scenes", str(d), "--json", "{OUT}/e.json", "-q"),
                 ("sweep", *tiny, "--backends", "torch,ort", "--scenes", str(d), "--bisect-top", "0", "--bootstrap",
                  "0", "--no-html", "--out", "{OUT}/sweep", "-q")]
    return tuple(cmds)


# -- checkpoints -----------------------------------------------------------------------------------------------------
def checkpoint_cases(seeds: Seeds, work: Path, rng, names=None) -> list[Case]:  # noqa: C901 - a small function per mutation
    import torch

    def state():
        obj = torch.load(seeds.checkpoint, map_location="cpu", weights_only=True)
        return obj, (obj["state_dict"] if isinstance(obj, dict) and "state_dict" in obj else obj)

    def p(name):
        return work / f"ckpt-{name}.pth"

    def wrong_keys():
        obj, sd = state()
        keys = list(sd)
        k = keys[int(rng.integers(0, len(keys)))]
        sd[k.replace(".", "_x.", 1)] = sd.pop(k)
        torch.save(obj, p("keys"))
        return p("keys"), k

    def missing_key():
        obj, sd = state()
        k = list(sd)[int(rng.integers(0, len(sd)))]
        del sd[k]
        torch.save(obj, p("missing"))
        return p("missing"), k

    def wrong_shape():
        obj, sd = state()
        k = [k for k, v in sd.items() if v.dim() >= 1][int(rng.integers(0, 10))]
        sd[k] = torch.zeros(*[s + 1 for s in sd[k].shape])
        torch.save(obj, p("shape"))
        return p("shape"), k

    def wrong_value_type():
        obj, sd = state()
        k = list(sd)[int(rng.integers(0, len(sd)))]
        sd[k] = pick(rng, ["text", 3, None])
        torch.save(obj, p("type"))
        return p("type"), k

    def not_a_dict():
        torch.save([1, 2, 3], p("list"))
        return p("list"), "a list"

    def text():
        p("text").write_text("this is not a checkpoint\n")
        return p("text"), "text"

    def truncated():
        return p("trunc"), truncate(seeds.checkpoint, p("trunc"), rng)

    def random_bytes():
        return p("flip"), flip_bytes(seeds.checkpoint, p("flip"), rng)

    def zip_of_garbage():
        with zipfile.ZipFile(p("zip"), "w") as z:
            z.writestr("archive/data.pkl", rng.integers(0, 256, 200, dtype=np.uint8).tobytes())
        return p("zip"), "zip with a garbage data.pkl"

    def evil_legacy():
        evil_pickle(p("evil"), seeds.marker)
        return p("evil"), "plain pickle whose load opens the marker"

    def evil_torch_save():
        torch.save({"state_dict": {}, "meta": _Evil(seeds.marker)}, p("evil2"))
        return p("evil2"), "torch.save of an object whose load opens the marker"

    def evil_nested():
        obj, sd = state()
        obj = {"state_dict": sd, "meta": {"hook": _Evil(seeds.marker)}} if isinstance(obj, dict) else obj
        torch.save(obj, p("evil3"))
        return p("evil3"), "real weights + one object whose load opens the marker"  # may load: the weights are fine

    muts = {k: v for k, v in locals().items() if callable(v) and k not in ("state", "p", "torch")}
    tiny = ("--preset", "tiny")
    out = []
    for name in names or muts:
        path, note = muts[name]()
        may_load = name in ("evil_nested", "random_bytes")  # real weights around the damage
        out.append(Case("checkpoint", f"checkpoint/{name}", bad=not may_load, note=str(note), commands=(
            ("infer", *tiny, "--checkpoint", str(path), "--out", "{OUT}/i.npz", "-q"),
            ("export", *tiny, "--checkpoint", str(path), "--out", "{OUT}/onnx", "-q"),
            ("bisect", *tiny, "--checkpoint", str(path), "--backends", "torch,ort", "--no-local", "-q"),
            ("bisect", *tiny, "--int8", str(path), "--backends", "torch,ort", "--no-local", "-q"),
        )))
    return out


# -- config files ----------------------------------------------------------------------------------------------------
def config_cases(seeds: Seeds, work: Path, rng, names=None) -> list[Case]:
    tiny = (seeds.configs / "tiny.py").read_text()

    def folder(name):
        d = work / f"cfg-{name}"
        shutil.copytree(seeds.configs, d)
        return d

    def syntax_error():
        d = folder("syntax")
        lines = tiny.splitlines()
        i = int(rng.integers(0, len(lines)))
        lines.insert(i, pick(rng, ["model = dict(", "}}}", "def :", "voxel_size = [0.32,, 1]"]))
        (d / "tiny.py").write_text("\n".join(lines))
        return d / "tiny.py", True, f"line {i + 1}"

    def base_loop():
        d = folder("loop")
        (d / "a.py").write_text("_base_ = ['./b.py']\nx = 1\n")
        (d / "b.py").write_text("_base_ = ['./a.py']\ny = 2\n")
        (d / "tiny.py").write_text(tiny.replace('_base_ = ["./_base_/pillar_second_secfpn.py"]',
                                                '_base_ = ["./_base_/pillar_second_secfpn.py", "./a.py"]'))
        return d / "tiny.py", True, "a.py ↔ b.py"

    def base_self():
        d = folder("self")
        (d / "tiny.py").write_text(tiny.replace("./_base_/pillar_second_secfpn.py", "./tiny.py"))
        return d / "tiny.py", True, "_base_ is itself"

    def base_missing():
        d = folder("nobase")
        shutil.rmtree(d / "_base_")
        return d / "tiny.py", True, "_base_ folder gone"

    def unknown_type():
        d = folder("type")
        key = str(pick(rng, ["pts_voxel_encoder", "pts_backbone", "pts_neck", "pts_middle_encoder"]))
        (d / "tiny.py").write_text(tiny + f"\nmodel.update({key}=dict(type='FuzzUnknownModule'))\n")
        return d / "tiny.py", True, key

    def custom_imports():
        d = folder("imports")
        (d / "fuzz_evil_module.py").write_text(f"open({str(seeds.marker)!r}, 'w').close()\n")
        (d / "tiny.py").write_text(tiny + "\ncustom_imports = dict(imports=['fuzz_evil_module'], "
                                          "allow_failed_imports=False)\n")
        return d / "tiny.py", False, "custom_imports = fuzz_evil_module (opens the marker)"

    def wrong_value():
        d = folder("value")
        new = pick(rng, ['"abc"', "[]", "[0.32]", "[-1, -1, -1]", "None", "[0, 0, 0]"])
        planted = tiny.replace("voxel_size = [0.64, 0.64, 8.0]", f"voxel_size = {new}")
        assert planted != tiny, "tiny.py's voxel_size line changed: plant the wrong value where it is now"
        (d / "tiny.py").write_text(planted)
        return d / "tiny.py", True, f"voxel_size = {new}"

    def binary():
        d = folder("binary")
        return d / "tiny.py", True, garbage(d / "tiny.py", rng)

    def not_py():
        d = folder("suffix")
        (d / "tiny.txt").write_text(tiny)
        return d / "tiny.txt", True, ".txt"

    def written(name, text):
        d = folder(name)
        (d / "tiny.py").write_text(text)
        return d / "tiny.py", True, text.strip().splitlines()[-1] if text.strip() else "empty"

    muts = {k: v for k, v in locals().items() if callable(v) and k not in ("folder", "written")}
    for name, text in (("model_not_dict", tiny + "\nmodel = 3\n"), ("empty", ""),
                       ("bad_reference", tiny + "\nfoo = {{_base_.no_such_key}}\n")):
        muts[name] = lambda name=name, text=text: written(name, text)
    out = []
    for name in names or muts:
        path, bad, note = muts[name]()
        out.append(Case("config", f"config/{name}", (
            ("infer", "--config", str(path), "--out", "{OUT}/i.npz", "-q"),
            ("export", "--config", str(path), "--out", "{OUT}/onnx", "-q"),
            ("bisect", "--config", str(path), "--backends", "torch,ort", "--no-local", "-q"),
            ("scenes", "--config", str(path), "--n", "1", "--out", "{OUT}/scenes", "-q"),
        ), bad, note=note))
    return out


# -- saved reports and sweep folders ---------------------------------------------------------------------------------
def _json_damage(doc, rng):
    """A copy of a JSON document with one value somewhere replaced (or deleted): the path changed."""
    doc = json.loads(json.dumps(doc))
    path, node = [], doc
    while True:
        keys = list(node) if isinstance(node, dict) else list(range(len(node))) if isinstance(node, list) else []
        if not keys or (path and rng.random() < 0.3):
            break
        k = keys[int(rng.integers(0, len(keys)))]
        if not isinstance(node[k], (dict, list)) or rng.random() < 0.2:
            path.append(k)
            break
        path.append(k)
        node = node[k]
    if not path:
        return [], "[]"
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    new = pick(rng, ["DELETE", None, "text", -1, 1e308, [], {}, [1, "a"], {"x": None}])
    if new == "DELETE" and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = None if new == "DELETE" else new
    return doc, f"{'.'.join(map(str, path))} = {new!r}"


def report_cases(seeds: Seeds, work: Path, rng, names=None) -> list[Case]:
    doc = json.loads(seeds.report.read_text())

    def p(name):
        return work / f"report-{name}.json"

    def as_written():  # the report untouched: an ort,ort run, every error 0 (its HTML once failed on that)
        shutil.copyfile(seeds.report, p("same"))
        return p("same"), False, "untouched"

    def truncated():
        return p("trunc"), True, truncate(seeds.report, p("trunc"), rng)

    def not_json():
        return p("garbage"), True, garbage(p("garbage"), rng)

    def a_list():
        p("list").write_text("[1, 2, 3]")
        return p("list"), True, "[1, 2, 3]"

    def other_schema():
        d = dict(doc, schema="someone.else/9")
        p("schema").write_text(json.dumps(d))
        return p("schema"), True, "schema someone.else/9"

    def field_type():  # one candidate field of another type (the table once read .get() on a float)
        field = pick(rng, ["detections", "wall_s", "precision", "paths", "errors"])
        d = dict(doc, **{field: {label: pick(rng, [1.5, [1, "a"], "text"]) for label in doc["candidates"]}})
        p("type").write_text(json.dumps(d))
        return p("type"), True, f"{field} of every candidate changed"

    def nan_tokens():
        p("nan").write_text(seeds.report.read_text().replace("0.0", "NaN", 5))
        return p("nan"), False, "NaN tokens"

    def value_changed():
        d, note = _json_damage(doc, rng)
        p("value").write_text(json.dumps(d))
        return p("value"), False, note

    def values_changed():
        d, notes = doc, []
        for _ in range(int(rng.integers(2, 6))):
            d, note = _json_damage(d, rng)
            notes.append(note)
        p("values").write_text(json.dumps(d))
        return p("values"), False, "; ".join(notes)

    def a_folder():
        p("dir").mkdir()
        return p("dir"), True, "a folder"

    muts = {k: v for k, v in locals().items() if callable(v) and k != "p"}
    out = []
    for name in names or muts:
        path, bad, note = muts[name]()
        cmds = [("report", str(path), "--html", "{OUT}/r.html", "--csv", "{OUT}/r.csv", "--json", "{OUT}/r.json"),
                ("extract", str(path), "--bundle", "{OUT}/bundle")]
        if bad:  # an accepted report starts fix's search: minutes; a damaged one must be refused first
            cmds.append(("fix", "--from-bisect", str(path), "--max-rel-rmse", "0.05", "--out", "{OUT}/fix", "-q"))
        out.append(Case("report", f"report/{name}", tuple(cmds), bad, note=note))
    return out


def sweep_cases(seeds: Seeds, work: Path, rng, invoke, names=None) -> list[Case]:
    """A finished sweep folder with sweep.json, the manifest or a shard damaged: fix --from-sweep and --resume."""
    base = seeds.build_sweep(invoke)
    out = []
    targets = {"sweep_json": "sweep.json", "manifest": "manifest.json", "shard": "shards/shard-00000.json"}
    for name in names or ("sweep_json", "manifest", "shard", "shard_value", "sweep_value", "no_sweep_json"):
        d = work / f"sweep-{name}"
        shutil.copytree(base, d)
        if name == "no_sweep_json":
            (d / "sweep.json").unlink()
            note, bad = "sweep.json gone", True
        elif name.endswith("_value"):
            f = d / targets["shard" if name == "shard_value" else "sweep_json"]
            damaged, note = _json_damage(json.loads(f.read_text()), rng)
            f.write_text(json.dumps(damaged))
            bad = False
        else:
            f = d / targets[name]
            note, bad = f"{f.name}: {truncate(f, f, rng)}", name != "shard"
        resume = ("sweep", "--preset", "tiny", "--backends", "torch,ort", "--n", "2", "--bisect-top", "0",
                  "--bootstrap", "0", "--no-html", "--shard-size", "1", "--out", str(d), "--resume", "-q")
        cmds = [resume] if name in ("manifest", "shard", "shard_value") else []
        if bad:
            cmds.append(("fix", "--from-sweep", str(d), "--max-rel-rmse", "0.05", "--out", "{OUT}/fix", "-q"))
        out.append(Case("sweep", f"sweep/{name}", tuple(cmds), bad and name != "shard", note=note))
    return [c for c in out if c.commands]


# -- rosbag2 folders -------------------------------------------------------------------------------------------------
def bag_cases(seeds: Seeds, work: Path, rng, names=None) -> list[Case]:
    def copy(name, src=None):
        d = work / f"bag-{name}"
        shutil.copytree(src or seeds.bag, d)
        return d

    def storage(d):
        return next(f for f in d.iterdir() if f.suffix in (".db3", ".mcap"))

    def damaged(name, src, how):
        d = copy(name, src)
        f = storage(d)
        return d, how is truncate and src is seeds.bag, how(f, f, rng)

    def garbage_storage():
        d = copy("gdb3")
        f = storage(d)
        return d, True, garbage(f, rng)

    def no_storage():
        d = copy("nodb3")
        storage(d).unlink()
        return d, True, "storage file gone"

    def metadata_garbage():
        d = copy("meta")
        return d, True, garbage(d / "metadata.yaml", rng)

    def metadata_gone():
        d = copy("nometa")
        (d / "metadata.yaml").unlink()
        return d, True, "metadata.yaml gone"

    def metadata_wrong():
        d = copy("metaw")
        text = (d / "metadata.yaml").read_text()
        swap = [("version: 9", "version: 99"), ("storage_identifier: sqlite3", "storage_identifier: foo"),
                ("message_count: ", "message_count: -"), ("rosbag2_bagfile_information:", "something_else:"),
                ("type: sensor_msgs/msg/PointCloud2", "type: sensor_msgs/msg/Nope"),
                ("relative_file_paths:\n", "relative_file_paths:\n  - ../../etc/passwd\n")]
        old, new = swap[int(rng.integers(0, len(swap)))]
        (d / "metadata.yaml").write_text(text.replace(old, new, 1))
        return d, False, f"{old!r} → {new!r}"  # a reader may not need the field changed

    def metadata_yaml_tags():
        d = copy("metatag")
        (d / "metadata.yaml").write_text("!!python/object/apply:builtins.open\n"
                                         f"- {seeds.marker}\n- w\n")
        return d, True, "a yaml tag that would open the marker"

    def empty_folder():
        d = work / "bag-empty"
        d.mkdir()
        return d, True, "empty folder"

    muts = {k: v for k, v in locals().items() if callable(v) and k not in ("copy", "storage", "damaged")}
    # the storage file cut or with bytes changed; a cut .db3 is unusable, while mcap's index sits at its end and a
    # reader may recover the front, and changed bytes may fall in unread padding
    for how, verb in ((truncate, "truncated"), (flip_bytes, "flipped")):
        for src, ext in ((seeds.bag, "db3"), (seeds.mcap, "mcap")):
            muts[f"{verb}_{ext}"] = lambda n=f"{verb}_{ext}", src=src, how=how: damaged(n, src, how)
    out = []
    for name in names or muts:
        d, bad, note = muts[name]()
        out.append(Case("bag", f"bag/{name}", (
            ("replay", str(d), "--preset", "tiny", "--n", "1", "--shuffle-seeds", "0",
             "--json", "{OUT}/replay.json", "-q"),
            ("replay", str(d), "--list", "-q"),
            ("sweep", "--preset", "tiny", "--backends", "torch,ort", "--scenes", str(d), "--bisect-top", "0",
             "--bootstrap", "0", "--no-html", "--out", "{OUT}/sweep", "-q"),
        ), bad, note=note))
    return out


# -- a deployment's prediction files ---------------------------------------------------------------------------------
def predictions_cases(seeds: Seeds, work: Path, rng, names=None) -> list[Case]:  # noqa: C901 - a small function per mutation
    def txt_folder(name):
        d = work / f"pred-{name}"
        shutil.copytree(seeds.cuda_pred, d)
        return d, sorted(d.glob("*.txt"))

    def txt_columns():
        d, files = txt_folder("cols")
        lines = files[0].read_text().splitlines()
        lines[0] = " ".join(lines[0].split()[:int(rng.integers(0, 10))])
        files[0].write_text("\n".join(lines) + "\n")
        return ("cuda", d), True, "a line with too few columns"

    def txt_words():
        d, files = txt_folder("words")
        files[0].write_text(files[0].read_text().replace("0.", "zz", 2))
        return ("cuda", d), True, "non-numbers"

    def txt_nan():
        d, files = txt_folder("nan")
        lines = files[0].read_text().splitlines()
        parts = lines[0].split()
        parts[int(rng.integers(0, len(parts)))] = str(pick(rng, ["nan", "inf", "-inf", "1e400"]))
        lines[0] = " ".join(parts)
        files[0].write_text("\n".join(lines) + "\n")
        return ("cuda", d), False, lines[0][:40]

    def txt_class():
        d, files = txt_folder("class")
        lines = files[0].read_text().splitlines()
        parts = lines[0].split()
        parts[9] = str(pick(rng, ["99", "-1", "2.5"]))
        lines[0] = " ".join(parts)
        files[0].write_text("\n".join(lines) + "\n")
        return ("cuda", d), False, f"class id {parts[9]}"

    def txt_binary():
        d, files = txt_folder("bin")
        garbage(files[0], rng)
        return ("cuda", d), True, "random bytes"

    def txt_tokens():
        d, files = txt_folder("tokens")
        for f in files:
            f.rename(f.with_name("unknown-" + f.name))
        return ("cuda", d), True, "no file named by a token of the info file"

    def txt_empty_folder():
        d = work / "pred-none"
        d.mkdir()
        return ("cuda", d), True, "empty folder"

    def pkl_evil():
        f = work / "pred-evil.pkl"
        evil_pickle(f, seeds.marker, wrap=lambda e: [{"pts_bbox": {"boxes_3d": e}}])
        return ("pkl", f), True, "a results pkl whose load opens the marker"

    def pkl_truncated():
        f = work / "pred-trunc.pkl"
        return ("pkl", f), True, truncate(seeds.mmdet3d_pkl, f, rng)

    def pkl_structure():
        f = work / "pred-struct.pkl"
        obj = [[1, 2], {"pts_bbox": 3}, {"boxes_3d": "x"}, {}, None, {"pts_bbox": {"boxes_3d": np.zeros((2, 3))}}]
        f.write_bytes(pickle.dumps(obj[int(rng.integers(0, len(obj)))] if rng.random() < 0.5 else obj))
        return ("pkl", f), True, "wrong structure"

    def submission_garbage():
        f = work / "pred-sub.json"
        return ("json", f), True, garbage(f, rng)

    def submission_damaged():
        f = work / "pred-sub2.json"
        d, note = _json_damage(json.loads(seeds.detections_json.read_text()), rng)
        f.write_text(json.dumps(d))
        return ("json", f), False, note

    muts = {k: v for k, v in locals().items() if callable(v) and k != "txt_folder"}
    out = []
    for name in names or muts:
        (fmt, path), bad, note = muts[name]()
        scenes = ("--scenes", str(seeds.scenes), "--preset", "tiny")
        if fmt == "json":
            cmds = (("eval", "--backends", "torch", *scenes, "--detections", str(path), "--json", "{OUT}/e.json",
                     "-q"),)
        else:
            flag = "--cuda-centerpoint" if fmt == "cuda" else "--mmdet3d-pkl"
            cmds = (("replay", flag, str(path), *scenes, "--shuffle-seeds", "0", "--json", "{OUT}/r.json", "-q"),)
        out.append(Case("predictions", f"predictions/{name}", cmds, bad, note=note))
    return out + infos_cases(seeds, work, rng, values=names is None)


def infos_cases(seeds: Seeds, work: Path, rng, values: bool = True) -> list[Case]:
    """The info file that `--scenes` names (mmdet3d v1.x infos.pkl): one that runs code, damaged bytes, one value
    changed; read by eval, sweep and the prediction-file replays."""
    src = seeds.scenes / "infos.pkl"
    with open(src, "rb") as f:
        doc = pickle.load(f)  # our own file, written by `cpdebug scenes`
    out = []

    def case(name, bad, note, write):
        d = work / f"infos-{name}"
        shutil.copytree(seeds.scenes, d)
        write(d / "infos.pkl")
        scenes = ("--scenes", str(d), "--preset", "tiny")
        out.append(Case("predictions", f"infos/{name}", (
            ("eval", "--backends", "torch,ort", *scenes, "--json", "{OUT}/e.json", "-q"),
            ("sweep", "--backends", "torch,ort", *scenes, "--bisect-top", "0", "--bootstrap", "0", "--no-html",
             "--out", "{OUT}/s", "-q"),
            ("replay", "--cuda-centerpoint", str(seeds.cuda_pred), *scenes, "--shuffle-seeds", "0", "-q")),
            bad, note=note))

    case("evil", True, "an info file whose load opens the marker",
         lambda f: evil_pickle(f, seeds.marker, wrap=lambda e: {"data_list": [e], "metainfo": {}}))
    case("truncated", True, "cut", lambda f: truncate(src, f, rng))
    bad_time = {**doc, "data_list": [{**doc["data_list"][0], "timestamp": "text"}, *doc["data_list"][1:]]}
    case("timestamp_text", True, "data_list.0.timestamp = 'text'", lambda f: f.write_bytes(pickle.dumps(bad_time)))
    for k in range(3 if values else 0):
        damaged, note = _pickle_damage(doc, rng)
        case(f"value{k}", False, note, lambda f, d=damaged: f.write_bytes(pickle.dumps(d)))
    return out


def _pickle_damage(doc, rng):
    """`_json_damage` for a pickled document of dicts, lists and arrays (arrays become lists first)."""
    def plain(o):
        if isinstance(o, dict):
            return {k: plain(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [plain(v) for v in o]
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, np.generic):
            return o.item()
        return o
    return _json_damage(plain(doc), rng)


# -- option values and environment switches --------------------------------------------------------------------------
def options_cases(seeds: Seeds, work: Path, rng, names=None) -> list[Case]:
    tiny = ("--preset", "tiny")
    afile = work / "a-file"
    afile.write_text("x")
    sw = ("sweep", *tiny, "--bisect-top", "0", "--bootstrap", "0", "--no-html")
    pool = {
        "n_negative": ("sweep", *tiny[:2], "--n", str(int(rng.integers(-10**6, 1))), "--out", "{OUT}/s"),
        "n_huge": (*sw, "--backends", "torch,ort", "--n", str(10 ** int(rng.integers(10, 19))), "--out", "{OUT}/s"),
        "eval_n_huge": ("eval", *tiny, "--n", str(10 ** int(rng.integers(10, 19))), "-q"),
        "scenes_n": ("scenes", *tiny, "--n", str(pick(rng, [0, -1, -10**9])), "--out", "{OUT}/sc", "-q"),
        "scenes_workers": ("scenes", *tiny, "--n", "1", "--workers", str(pick(rng, [0, -3])), "--out", "{OUT}/sc",
                           "-q"),
        "backends_unknown": ("bisect", *tiny, "--backends", str(pick(rng, ["foo", "torch,bar", "ort-gpu-fp16",
                                                                            "torch-cpu-fp7", "ort-cpu-fp16-x"]))),
        "backends_empty": ("bisect", *tiny, "--backends", str(pick(rng, [",", " , ", "torch,", ",ort"]))),
        "backends_twice": ("sweep", *tiny, "--backends", "torch,ort,ort", "--out", "{OUT}/s"),
        "backends_missing_dir": ("bisect", *tiny, "--backends", f"ort,ort@{work / 'nope'}"),
        "backends_trt": ("bisect", *tiny, "--backends", "torch,trt-fp16", "-q"),
        "backends_cuda": ("eval", *tiny, "--backends", "torch-cuda,ort", "--n", "1", "-q"),
        "level": ("bisect", *tiny, "--level", str(pick(rng, ["bogus", "ALL", "layer,block"]))),
        "sweep_level": ("sweep", *tiny, "--level", "bogus", "--out", "{OUT}/s"),
        "preset": ("infer", "--preset", str(pick(rng, ["nope", "", "../tiny", "tiny.py"])), "--out", "{OUT}/i.npz"),
        "use_dim": ("infer", *tiny, "--points", str(seeds.bin), "--use-dim", str(pick(rng, ["0,1", "9", "a,b",
                                                                                            "0,1,2,99", "-1"])),
                    "--out", "{OUT}/i.npz", "-q"),
        "load_dim": ("infer", *tiny, "--points", str(seeds.bin), "--load-dim", str(pick(rng, [3, 7, 1000])),
                     "--out", "{OUT}/i.npz", "-q"),
        "memory_budget": ("bisect", *tiny, "--memory-budget", "-5"),
        "lockstep_mode": ("bisect", *tiny, "--backends", "ort,ort", "--lockstep-mode", "bogus"),
        "exporter": ("keep-fp32", "--onnx", str(seeds.onnx / ENCODER), "--exporter", "bogus", "-q"),
        "candidates": ("keep-fp32", "--onnx", str(seeds.onnx / ENCODER), "--search-nodes", "no_such_node", "-q"),
        "keep_backend": ("keep-fp32", "--onnx", str(seeds.onnx / ENCODER), "--backends", "ort", "-q"),
        "atol": ("bisect", *tiny, "--atol", str(pick(rng, ["-1", "nan", "inf"])), "-q"),
        "fix_tol": ("fix", *tiny, "--max-rel-rmse", str(pick(rng, ["-1", "nan", "0"])), "--out", "{OUT}/fix", "-q"),
        "fix_no_target": ("fix", *tiny, "--out", "{OUT}/fix", "--scenes", "-1", "-q"),
        "fix_method": ("fix", *tiny, "--backends", "torch,ort-cpu-int8", "--method", "bogus", "--out", "{OUT}/fix",
                       "-q"),
        "fix_backends": ("fix", *tiny, "--backends", "torch,ort,ort-cpu-fp16", "--out", "{OUT}/fix", "-q"),
        "fix_check_missing": ("fix", "--check", str(work / "nope"), "-q"),
        "fix_check_not_fix": ("fix", "--check", str(seeds.onnx), "-q"),
        "fix_device": ("fix", "--check", str(seeds.onnx), "--device", "tpu", "-q"),
        "infer_encoder": ("infer", *tiny, "--encoder", "trt", "--out", "{OUT}/i.npz", "-q"),
        "infer_device": ("infer", *tiny, "--device", str(pick(rng, ["tpu", "cuda:9", ""])), "--out", "{OUT}/i.npz",
                         "-q"),
        "out_is_file": ("export", *tiny, "--out", str(afile), "-q"),
        "out_under_file": ("infer", *tiny, "--out", str(afile / "x.npz"), "-q"),
        "out_proc": ("export", *tiny, "--out", "/proc/cpdebug-fuzz/onnx", "-q"),
        "sweep_out_file": ("sweep", *tiny, "--backends", "torch,ort", "--n", "1", "--out", str(afile), "-q"),
        "json_dir": ("bisect", *tiny, "--backends", "ort,ort", "--no-local", "--json", str(work), "-q"),
        "json_missing_dir": ("report", str(seeds.report), "--json", str(work / "no" / "r.json")),
        "html_under_file": ("report", str(seeds.report), "--html", str(afile / "r.html")),
        "points_missing": ("infer", *tiny, "--points", str(work / "no.bin"), "--out", "{OUT}/i.npz", "-q"),
        "scenes_missing": ("eval", *tiny, "--scenes", str(work / "no-scenes"), "-q"),
        "data_root_missing": ("eval", *tiny, "--backends", "torch", "--scenes", str(seeds.scenes / "infos.pkl"),
                              "--data-root", str(work / "no-root"), "-q"),
        "scenes_is_onnx": ("sweep", *tiny, "--backends", "torch,ort", "--scenes", str(seeds.onnx), "--out",
                           "{OUT}/s", "-q"),
        "shard_size": ("sweep", *tiny, "--shard-size", "0", "--out", "{OUT}/s"),
        "ray_address": ("sweep", *tiny, "--backends", "torch,ort", "--n", "1", "--ray", "bogus://x:1", "--out",
                        "{OUT}/s", "-q"),
        "replay_max_voxels": ("replay", str(seeds.bag), *tiny, "--max-voxels", str(pick(rng, ["abc", "-5", "0"])),
                              "-q"),
        "replay_seeds": ("replay", str(seeds.bag), *tiny, "--shuffle-seeds", str(pick(rng, ["a", "1,,2", "-1"])),
                         "-q"),
        "replay_topic": ("replay", str(seeds.bag), *tiny, "--lidar-topic", "/no/such/topic", "-q"),
        "replay_objects_topic": ("replay", str(seeds.bag), *tiny, "--objects-topic", "/no/such", "-q"),
        "replay_both": ("replay", str(seeds.bag), *tiny, "--cuda-centerpoint", str(seeds.cuda_pred), "-q"),
        "replay_nothing": ("replay", *tiny, "-q"),
        "replay_pkl_no_scenes": ("replay", "--mmdet3d-pkl", str(seeds.mmdet3d_pkl), *tiny, "-q"),
        "bench_repeat": ("bench", *tiny, "--repeat", "0"),
        "extract_candidate": ("extract", str(seeds.report), "--bundle", "{OUT}/b", "--candidate", "nope"),
        "int8_missing": ("bisect", *tiny, "--int8", str(work / "no-ptq"), "--backends", "torch,ort-cpu-int8"),
        "checkpoint_dir": ("infer", *tiny, "--checkpoint", str(work), "--out", "{OUT}/i.npz", "-q"),
        "config_and_preset": ("infer", "--config", str(seeds.configs / "tiny.py"), "--preset", "demo", "--out",
                              "{OUT}/i.npz", "-q"),
        "torch_file": ("bisect", "--torch", f"{work / 'nope.py'}:build", "-q"),
        "inputs_missing": ("bisect", "--onnx", str(seeds.onnx / ENCODER), "--inputs", str(work / "x.npz"), "-q"),
        "inputs_wrong_keys": ("bisect", "--onnx", str(seeds.onnx / ENCODER), "--inputs", str(seeds.npy), "-q"),
    }
    out = []
    for name in names or pool:
        argv = pool[name]
        # a value that is in fact fine (a valid --n, --load-dim of a real column count) may end 0
        fine = name in ("atol", "load_dim", "candidates", "n_negative", "fix_tol")
        out.append(Case("options", f"options/{name}", (argv,), bad=not fine, note=" ".join(argv[1:])[-80:]))
    return out


def env_cases(seeds: Seeds, work: Path, rng, names=None) -> list[Case]:
    tiny = ("--preset", "tiny")
    values = ["bogus", " native ", "1", "NATIVE", "éé"]  # "native" in any case and spacing is valid
    pool = {
        "ort_cpu_half": ({"CPDEBUG_ORT_CPU_HALF": str(pick(rng, values))},
                         ("bisect", *tiny, "--backends", "ort,ort-cpu-fp16", "--no-local", "--level", "stage", "-q")),
        "torch_cpu_half": ({"CPDEBUG_TORCH_CPU_HALF": str(pick(rng, values))},
                           ("bisect", *tiny, "--backends", "torch,torch-cpu-fp16", "--no-local", "--level", "stage",
                            "-q")),
        "compare_threads": ({"CPDEBUG_COMPARE_THREADS": str(pick(rng, ["-3", "abc", "0", "99999", "1e3", ""]))},
                            ("bisect", *tiny, "--backends", "torch,ort", "--no-local", "--level", "stage", "-q")),
        "columns": ({"COLUMNS": str(pick(rng, ["0", "-1", "abc", "100000"]))},
                    ("report", str(seeds.report))),
    }
    out = []
    for name in names or pool:
        env, argv = pool[name]
        out.append(Case("env", f"env/{name}", (argv,), bad=False, env=env,
                        note=", ".join(f"{k}={v!r}" for k, v in env.items())))
    return out


def all_cases(seeds: Seeds, work: Path, rng, invoke, kinds=KINDS, names: dict | None = None) -> list[Case]:
    """Every mutation of every kind once (or `names[kind]`, a list of mutation names)."""
    names = names or {}
    makers = {"onnx": onnx_cases, "points": points_cases, "checkpoint": checkpoint_cases, "config": config_cases,
              "report": report_cases, "bag": bag_cases, "predictions": predictions_cases, "options": options_cases,
              "env": env_cases}
    out = []
    for kind in kinds:
        sub = work / f"{kind}-{len(out)}"
        sub.mkdir(parents=True, exist_ok=True)
        if kind == "sweep":
            out += sweep_cases(seeds, sub, rng, invoke, names.get(kind))
        else:
            out += makers[kind](seeds, sub, rng, names.get(kind))
    return out


def environment_clean() -> dict:
    """The environment switches cleared for a run: a case sets its own."""
    return {k: None for k in os.environ if k.startswith("CPDEBUG_")}
