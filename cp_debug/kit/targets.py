"""Two targets, one file (`cpdebug compare-targets --backends trt-fp16@KIT_A,trt-fp16@KIT_B`, issue 110): the
results two kits of one deployed file brought back — two TensorRT versions, two GPUs, a Jetson and a workstation —
compared with each other, the first taken as the reference, tensor by tensor in the graph's order; the first tensor
whose value moved is named with its ONNX node and, where a kit's results carry trtexec's `--exportLayerInfo`, the
engine layer that wrote it on each target (its type, precision, tactic; or that the engine fused it away).

Nothing runs here: both sides are the targets' results (`backends/kit/kit_results.py`, each checked against its
kit). The kits must hold the same file and the same samples (their manifests' sha256): else one line, exit 2. A
tensor is judged as bisect judges a probe (`compare/noise.judge` at the candidate's precision: a run of that precision
against another reaches about its budget); one that either target did not keep (fused away, not dumped) is left out
and counted. (`bisect` takes no target's results as its reference: it re-runs the reference's segments locally.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cp_debug.backends.kit import kit_files as kf
from cp_debug.errors import BadInputError

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.backends.spec import BackendSpec
    from cp_debug.compare.diff import TensorDiff
    from cp_debug.compare.noise import Judgement


@dataclass(frozen=True)
class TargetLayer:
    """What one target's engine did with a tensor: the layer that wrote it (`--exportLayerInfo`), or why none."""

    layer: str | None
    type: str | None = None
    precision: str | None = None
    tactic: str | None = None
    why_none: str | None = None  # no layer: fused away, or the results carry no layer information

    def to_json(self) -> dict:
        return {"layer": self.layer, "type": self.type, "precision": self.precision, "tactic": self.tactic,
                "why_none": self.why_none}

    def words(self) -> str:
        if self.layer is None:
            return str(self.why_none)
        more = ", ".join(x for x in (self.type, self.precision and self.precision.upper(),
                                      self.tactic and f"tactic {self.tactic}") if x)
        return f"layer {self.layer!r}" + (f" ({more})" if more else "")


@dataclass(frozen=True)
class MovedTensor:
    """The first tensor whose value moved between the two targets on one frame."""

    tensor: str
    node: str
    op_type: str
    index: int  # its node's place in the graph's order
    diff: "TensorDiff"
    judgement: "Judgement"
    layers: dict[str, TargetLayer]  # backend label -> what that target's engine did with it

    def to_json(self) -> dict:
        return {"tensor": self.tensor, "node": self.node, "op_type": self.op_type, "index": self.index,
                "diff": self.diff.to_json(), "judgement": self.judgement.to_json(),
                "layers": {k: v.to_json() for k, v in self.layers.items()}}


@dataclass(frozen=True)
class FrameComparison:
    frame: str
    token: str
    compared: int  # tensors both targets kept
    left_out: int  # tensors one of them did not keep
    moved: int  # tensors beyond the judge
    first_moved: MovedTensor | None

    def to_json(self) -> dict:
        return {"frame": self.frame, "token": self.token, "compared": self.compared, "left_out": self.left_out,
                "moved": self.moved, "first_moved": self.first_moved.to_json() if self.first_moved else None}


@dataclass(frozen=True)
class TargetsReport:
    """One candidate target against the reference target, every frame of their kits."""

    reference: str
    candidate: str
    file: str  # the kit file both ran (the candidate's precision)
    precision: str
    frames: tuple[FrameComparison, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def first_moved(self) -> MovedTensor | None:
        """The earliest tensor in the graph's order that moved on any frame."""
        moved = [f.first_moved for f in self.frames if f.first_moved is not None]
        return min(moved, key=lambda m: m.index) if moved else None

    @property
    def outcome(self):
        """The first moved tensor's verdict (`compare/noise.Outcome`; diverged where it is NaN/Inf or reshaped)."""
        from cp_debug.compare.noise import Outcome

        first = self.first_moved
        if first is None:
            return Outcome.WITHIN_PRECISION
        return Outcome.DIVERGED if first.diff.status != "ok" else first.judgement.outcome

    def lines(self) -> list[str]:
        """The comparison in words, for the terminal."""
        out = [f"{self.candidate} against {self.reference} ({self.file}, judged at {self.precision}): "
               f"{self.outcome.words}"]
        for f in self.frames:
            head = f"  {f.frame} ({f.token}): {f.moved} of {f.compared} tensors moved"
            head += f" ({f.left_out} not in both targets' results)" if f.left_out else ""
            out.append(head)
        first = self.first_moved
        if first is not None:
            d = first.diff
            out.append(f"  first moved: {first.tensor} (node {first.node}, {first.op_type}, #{first.index}): "
                       f"{d.status}, max abs {d.max_abs:.3g}, rel RMSE {d.rel_rmse:.3g} ({first.judgement.reason})")
            out += [f"    {label}: {layer.words()}" for label, layer in first.layers.items()]
        return out + [f"  {n}" for n in self.notes]

    def to_json(self) -> dict:
        first = self.first_moved
        return {"outcome": self.outcome.value, "reference": self.reference, "candidate": self.candidate,
                "file": self.file, "precision": self.precision, "first_moved": first.to_json() if first else None,
                "frames": [f.to_json() for f in self.frames], "notes": list(self.notes)}


def compare_targets(reference: tuple[str, "BackendSpec"], candidate: tuple[str, "BackendSpec"]) -> TargetsReport:
    """`candidate`'s target results against `reference`'s (labels and `trt-*@KIT` specs) on every frame."""
    from cp_debug.backends.kit.kit_results import target_results
    from cp_debug.graph.model import load_onnx

    (rl, rs), (cl, cs) = reference, candidate
    for label, spec in (reference, candidate):
        if not spec.kit:
            raise BadInputError(f"{label} is no kit's results: compare-targets takes SPEC@KIT for each target "
                                "(two runtimes here: `cpdebug bisect --onnx FILE --backends ort-cpu,ort-cuda`)")
    rk, ck = kf.open_kit(rs.onnx_dir), kf.open_kit(cs.onnx_dir)
    stage = _same_file(rl, rk, cl, ck)
    rm, cm = rk.manifest, ck.manifest
    rres = target_results(rk, rs.precision, rm.stage(stage))
    cres = target_results(ck, cs.precision, cm.stage(stage))
    run = kf.onnx_path(cs.precision, stage, cm.held_precision)
    model = load_onnx(ck.folder / run, check=False)
    order = [(i, n, t) for i, n in enumerate(model.graph.node) for t in n.output if t]
    frames = []
    for rf, cf in _paired_frames(rm, cm, stage):
        ref, cand = rres.frames[rf.id], cres.frames[cf.id]
        compared = left = moved = 0
        first = None
        for i, node, name in order:
            if name not in ref or name not in cand:
                left += name in ref or name in cand
                continue
            diff, j = _judged(name, ref[name], cand[name], cs.precision)
            if diff is None:
                continue
            compared += 1
            if j.beyond or diff.status != "ok":
                moved += 1
                if first is None:
                    layers = {rl: _layer(rk, rs.precision, rf.id, stage, name, rres),
                              cl: _layer(ck, cs.precision, cf.id, stage, name, cres)}
                    first = MovedTensor(name, node.name, node.op_type, i, diff, j, layers)
        frames.append(FrameComparison(cf.id, cf.token, compared, left, moved, first))
    notes = (f"{rl}: {rres.runner_name} ({rres.source})", f"{cl}: {cres.runner_name} ({cres.source})")
    return TargetsReport(rl, cl, run, cs.precision, tuple(frames), notes)


def _same_file(rl: str, rk: kf.Kit, cl: str, ck: kf.Kit) -> str:
    """The one stage both kits hold the same file of (sha256 of `<stage>.onnx`); one line otherwise."""
    rm, cm = rk.manifest, ck.manifest
    if len(rm.stages) != 1 or [s.name for s in rm.stages] != [s.name for s in cm.stages]:
        raise BadInputError(f"{rl} and {cl}: compare-targets takes kits of one graph, the same in both (stages "
                            f"{', '.join(s.name for s in rm.stages)} / {', '.join(s.name for s in cm.stages)})")
    stage = rm.stages[0].name
    a, b = rm.files.get(f"{stage}.onnx"), cm.files.get(f"{stage}.onnx")
    if a != b:
        raise BadInputError(f"{rk.folder} and {ck.folder} hold other files ({stage}.onnx sha256 "
                            f"{str(a)[:12]}… / {str(b)[:12]}…): two targets are compared on one file; write both "
                            "kits of it")
    return stage


def _paired_frames(rm: kf.Manifest, cm: kf.Manifest, stage: str):
    """Each candidate frame with the reference frame fed the same inputs (sha256); one line where one has none."""
    rs, cs = rm.stage(stage), cm.stage(stage)

    def key(st: kf.KitStage, fid: str) -> tuple:
        return tuple(t.sha256.get(fid) for t in st.inputs)

    by_key = {key(rs, f.id): f for f in rm.frames}
    pairs = []
    for f in cm.frames:
        r = by_key.get(key(cs, f.id))
        if r is None:
            raise BadInputError(f"frame {f.id} ({f.token}) of the candidate's kit has inputs the reference's kit does "
                                "not hold: write both kits with the same --inputs")
        pairs.append((r, f))
    return pairs


def _judged(name: str, ref, cand, precision: str):
    """(TensorDiff, Judgement) of one tensor, as bisect judges a probe; (None, None) for a non-float tensor."""
    import numpy as np

    from cp_debug.compare.diff import TensorDiff, default_tolerance
    from cp_debug.compare.noise import judge

    ref, cand = np.asarray(ref), np.asarray(cand)
    if not (np.issubdtype(ref.dtype, np.floating) and np.issubdtype(cand.dtype, np.floating)):
        return None, None
    diff = TensorDiff.from_arrays(name, ref.astype(np.float32), cand.astype(np.float32),
                                  default_tolerance(precision))
    return diff, judge(diff, precision)


def _layer(kit: kf.Kit, precision: str, frame: str, stage: str, tensor: str, results) -> TargetLayer:
    """The engine layer that wrote `tensor` on this target, from its trtexec `--exportLayerInfo`."""
    from cp_debug.backends.trt.trt_dumps_layer_info import FUSED, read_layer_info

    path = kit.folder / kf.trtexec_results(precision, frame, stage) / kf.TRTEXEC_LAYERS
    if results.runner_name != "trtexec" or not path.is_file():
        return TargetLayer(None, why_none=f"no layer information ({results.runner_name}'s results; "
                                          f"{kf.TRTEXEC_SCRIPT} exports it)")
    info = read_layer_info(path)
    layer = info.layer_of_tensor(tensor)
    if layer is None:
        return TargetLayer(None, why_none=FUSED if info.detailed else "layer names only (not built detailed)")
    return TargetLayer(layer.name, layer.type or None, layer.precision, None if layer.tactic is None
                       else str(layer.tactic))
