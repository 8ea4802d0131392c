"""A decision at a threshold read through a tensor quantized coarser than the reference's distance to it (issue 115,
item 2: the reason is the mechanism the data shows). A Sigmoid read at 0.5 decides at its input's 0; behind a bias
Add and a Reshape that input is a MatMul's output, and one INT8 Q/DQ pair there rounds every value to a multiple of
its range / 127. attacut's word starts: the built-in quantizes its last MatMul's output (the logit before its bias
−0.152) at a step of 1.06 (amax 135, set by the confident characters); the threshold, 0.152 in that tensor, lies
inside level 0's bin, and every value from −0.53 to 0.53 reads level 0: the bias alone, 0.462 — three word starts
whose reference sits 0.14–0.65 from the threshold are lost, two by their own value's rounding, one after conv2's
rounding moved it into the bin. A user's per-channel file reads the logit at a step of 0.574: the reference's +0.26
rounds to level 0, the threshold itself — the Sigmoid's 0.5 exactly, a tie the output's own pair decides (0.502).

The finding walks back from each graph output a Sigmoid writes (`decisions.decided_outputs`) through the ops that
only reshape (`graph/decided.SHAPE_ONLY`) and Adds of a constant — each moves the threshold, not the distance to it —
to the tensors read through a Q/DQ pair in the candidate (the built-in's calibrated amax / 127; a user's file's own
scale), and takes the coarsest. It is said where a decision flipped at 0.5 and the reference's distance to the
threshold at half of the flipped elements or more (its logit: the same in each of those tensors) lies below that
step — fewer, and the step is not what moved them (a cosmic-ray mask's INT8: 39 of 508 within it) —, with the step,
the margins, how many of them the reference's own value rounds across or onto the threshold (a tie), and the cure
(that tensor's writer out of INT8). It names the mechanism where the pair's writer, or a node computing on it (left
out, it reads the tensor float: a bias Add after a MatMul's output pair), is the root cause or a member of the set
the intervention confirmed, with that cure; else with the root's part (its error moves a value across a level
of that pair). Either way in place of the rounding hint: the rounding is the root's, the decision's loss the pair's."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cp_debug.bisect.findings.contract import Candidate, Finding, Role, Segment

THRESHOLD = 0.5  # a Sigmoid's, as `decisions.py` reads it
LISTED = 4  # flipped elements whose margins are said


@dataclass(frozen=True)
class ThresholdStep:
    output: str  # the decided graph output
    tensor: str  # the quantized tensor the decision reads
    writer: str  # its writer node
    step: float
    margins: tuple[float, ...]  # the reference's distance to the threshold at each flipped element, in its units
    flipped: int
    closer: int  # flipped elements whose margin lies below one step
    across: int  # of them, the reference's own value rounds across the threshold
    tie: int  # of them, it rounds onto the threshold (the Sigmoid then reads 0.5 exactly)
    at: float | None  # the threshold in the tensor's units (one value where every element shares it)
    behind: str  # what lies between the tensor and the Sigmoid ("a bias Add and a Reshape")
    names_set: bool  # its writer is the root cause or a member of the confirmed set
    at_output: bool = False  # the root cause is the decided output itself (its own pair, after the Sigmoid)

    def text(self) -> str:
        listed = ", ".join(f"{m:.3g}" for m in self.margins[:LISTED]) + (" …" if len(self.margins) > LISTED else "")
        where = ""
        if self.at is not None:  # the bin of the level nearest the threshold: every value in it reads that level
            level = round(self.at / self.step) * self.step
            side = "the threshold itself" if abs(level - self.at) <= 1e-4 * self.step else (
                "above it" if level > self.at else "below it")
            where = (f" (the threshold {self.at:.3g} there, in level {level:.3g}'s bin [{level - self.step / 2:.3g}, "
                     f"{level + self.step / 2:.3g}]: every value in it reads {level:.3g}, {side})")
        own = [f"across it at {self.across}"] if self.across else []
        if self.tie:
            own.append(f"onto it at {self.tie} — at the tie: the Sigmoid reads {THRESHOLD:g} exactly, the decision "
                       "left to the rounding after it")
        said = f"; the reference's own value rounds {', '.join(own)}" if own else ""
        cure = ("; keep this tensor float (its writer or its reader out of INT8)" if self.names_set else
                "; the output's own pair decides that tie" if self.at_output and self.tie else
                "; the root cause's rounding moves values across its levels")
        own_name = self.writer in self.tensor  # an exporter's name says its writer: `/linear2/MatMul_output_0`
        return (f"the decision at '{self.output}' (Sigmoid at {THRESHOLD:g}) reads '{self.tensor}'"
                f"{'' if own_name else f' ({self.writer} writes it)'}"
                f"{' behind ' + self.behind if self.behind else ''}, quantized at a step of {self.step:.3g}{where}: "
                f"wider than the reference's distance to the threshold at {self.closer} of {self.flipped} flipped "
                f"element(s) ({listed}): one level's rounding takes such a value across{said}{cure}")


def _chain(model, output: str) -> tuple[list[str], list[str]]:
    """The tensors the Sigmoid writing `output` reads through ops that only reshape and Adds of a constant, nearest
    first, and those ops' types."""
    from cp_debug.graph.decided import SHAPE_ONLY

    writers = {t: n for n in model.graph.node for t in n.output}
    consts = {i.name for i in model.graph.initializer} | {n.output[0] for n in model.graph.node
                                                          if n.op_type == "Constant"}
    name = output
    while (n := writers.get(name)) is not None and n.op_type in SHAPE_ONLY:
        name = n.input[0]
    if n is None or n.op_type != "Sigmoid":
        return [], []
    chain, ops, name = [n.input[0]], [], n.input[0]
    while (n := writers.get(name)) is not None:
        if n.op_type in SHAPE_ONLY:
            name = n.input[0]
        elif n.op_type == "Add" and sum(i in consts for i in n.input) == 1:
            name = next(i for i in n.input if i not in consts)
        else:
            break
        ops.append(n.op_type)
        chain.append(name)
    return chain, ops


def _file_step(model, tensor: str) -> float | None:
    """The scale of the per-tensor QuantizeLinear a user's Q/DQ file reads `tensor` through."""
    from cp_debug.precision.int8 import pair_scale

    q = next((n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == tensor), None)
    return pair_scale(model, q) if q is not None else None


def _steps(run, state, stage: int, chain: list[str]) -> dict[str, float]:
    """Each tensor of `chain` the candidate reads through a per-tensor INT8 pair: its step."""
    if state.spec.onnx_dir is not None:
        model = run.stage_of(state.label, stage).onnx()
        found = {t: _file_step(model, t) for t in chain}
        return {t: s for t, s in found.items() if s}
    return {t: float(state.int8_amax[t]) / 127.0 for t in chain if state.int8_amax.get(t)}


def _cure_nodes(state, root: str) -> set[str]:
    """The nodes the root cause and the set the intervention confirmed hold (a module probe: its path's nodes)."""
    names = {root}
    tried = state.intervention
    if tried is not None and tried.cure is not None:
        names |= set(tried.keep()) | {x.probe for x in tried.cure.restored}
    return names


def _names(node, tensor: str, names: set[str]) -> bool:
    if node.name in names or tensor in names:
        return True
    return any(n and "/" not in n and node.name.startswith(f"/{n.replace('.', '/')}/") for n in names)


def threshold_step(run, state, root: str) -> ThresholdStep | None:
    """A Sigmoid-decided output that flipped, read through a pair coarser than the reference's distance to the
    threshold at its flipped elements, or None."""
    from cp_debug.bisect.findings.decisions import decided_outputs, flipped
    from cp_debug.bisect.findings.intervention import _as_deployed

    if not flipped(state):
        return None
    stage = len(run.subject.stages) - 1
    st, ref = run.subject.stages[stage], run.ref_outputs.get(stage) or {}
    model = st.onnx_model
    if model is None:
        return None
    outs = [o for o, op in decided_outputs(st).items() if op == "Sigmoid" and o in ref]
    got = _as_deployed(run, state, stage) if outs else {}
    for out in outs:
        a, b = np.asarray(ref[out], np.float64).ravel(), np.asarray(got.get(out, ()), np.float64).ravel()
        if a.shape != b.shape:
            continue
        flip = (a > THRESHOLD) != (b > THRESHOLD)
        chain, ops = _chain(model, out)
        steps = _steps(run, state, stage, chain)
        if not flip.any() or not steps:
            continue
        tensor = max(steps, key=steps.get)
        step = steps[tensor]
        p = np.clip(a[flip], 1e-12, 1 - 1e-12)
        logit = np.log(p) - np.log1p(-p)
        margin = np.abs(logit)
        closer = margin < step
        if closer.sum() * 2 < flip.sum():  # the step explains few of the flips: no mechanism of the decision
            continue  # (a cosmic-ray mask's INT8: 39 of 508 flipped pixels within a step of 0.145, 308 beyond 0.25)
        across = tie = 0
        at = None
        t_ref = ref.get(tensor, run.store.get(tensor) if tensor in run.store else None)  # a probe's: stored
        if t_ref is not None and np.size(t_ref) == a.size:
            t = np.asarray(t_ref, np.float64).ravel()[flip]
            thr = t - logit  # where the Sigmoid's input is 0, in the tensor's units
            level = np.round(t / step) * step
            on = np.isclose(level, thr, atol=1e-4 * step)  # float32's logit: the threshold to a ten-thousandth
            tie = int((on & closer).sum())
            across = int((((level > thr) != (t > thr)) & ~on & closer).sum())
            at = float(thr[0]) if np.allclose(thr, thr[0], atol=1e-4 * step) else None
            at = 0.0 if at is not None and abs(at) < 1e-4 * step else at
        writer = next((n for n in model.graph.node if tensor in n.output), None)
        names = _cure_nodes(state, root)
        named = writer is not None and _names(writer, tensor, names) or any(
            _names(n, n.output[0], names) for n in model.graph.node if tensor in n.input and n.output)
        behind = " and ".join(dict.fromkeys("a bias Add" if o == "Add" else f"a {o}" for o in ops[:chain.index(
            tensor)]))
        return ThresholdStep(out, tensor, writer.name if writer is not None else tensor, step,
                             tuple(sorted(float(m) for m in margin[closer])), int(flip.sum()), int(closer.sum()),
                             across, tie, at, behind, named,
                             at_output=root == out)
    return None


@dataclass(frozen=True)
class CoarseThreshold:
    """The examiner's part for thresholds (`output_step.CoarseOutput` asks it where no row of scores is read): an
    INT8 decision at a Sigmoid's 0.5 read through a pair coarser than the reference's distance to it."""

    fault: str = "threshold step"
    role: Role = Role.WHY

    def applies(self, c: Candidate) -> bool:
        return c.ran and c.precision == "int8" and c.spec.runs_onnx

    def examine(self, seg: Segment) -> Finding | None:
        found = threshold_step(seg.run, seg.state, seg.root) if seg.root else None
        return Finding(self.fault, self.role, seg.root, found.text(), found.step, replaces_hint=True,
                       detail=found) if found else None
