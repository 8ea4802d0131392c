"""A mixture of experts whose router chooses other experts, read as a decision (issue 116, s14).

GPT-OSS's INT4 file as ONNX Runtime GenAI's builder makes it flips greedy step 1 (9 → 72): its router is a
`MatMulNBits` (4-bit weights) feeding a fused `QMoE` (com.microsoft) whose top-k picks the experts of each token. The
router's logits stay within the format's rounding (0.1 relative), the MoE's output is 0.6 off: the router's rounding
sends a token to another expert, and the block's output is that expert's, not a rounding of its own. Read as a layer's
error it was "no single layer dominates"; read as the decision it is, the finding says which token's experts differ
(the reference's top-k against the candidate's), the router logits' margin between the k-th and the (k+1)-th expert
in both, and whether the router's own rounding moves it: its segment alone run as the candidate on the reference's
input, routing some of those tokens otherwise (else, where it cannot be cut, its local error reaching that margin) —
then the root is the router, the mechanism its weights' rounding moving the choice of experts.

The routing is read from the candidate's graph: each `MoE` / `QMoE` node's `k` and its `router_probs` input (the
router's logits, one row a token: onnxruntime's contrib op), the probe mapped to that tensor (or to one a Reshape /
Identity / Cast before it) holding the reference's logits (a `--torch` model's router output, an ONNX reference's
tensor), the candidate's own logits from one more run of its stage with those tensors exposed. Not read: a MoE the
candidate does not run as an ONNX graph, a sparse mixer (`use_sparse_mixer`), a router whose logits no probe holds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cp_debug.bisect.findings.quantized.choice import ordinal
from cp_debug.bisect.run_state import CandidateState, RunState
from cp_debug.graph.plan import node_attr

MOE_OPS = ("MoE", "QMoE")
SHAPE_ONLY = ("Reshape", "Identity", "Cast", "Squeeze", "Unsqueeze", "Flatten")
ROUTER_OPS = (*SHAPE_ONLY, "Add", "MatMul", "MatMulNBits", "Gemm")  # a router: a linear layer and its bias
SHOWN = 3  # tokens said in the words (every one in the JSON)


@dataclass(frozen=True)
class TokenRoute:
    """One token whose experts differ: the reference's top-k against the candidate's, and each side's margin between
    its k-th and (k+1)-th logit."""

    token: int  # its row in the router's logits (its position in the step's forward)
    reference: tuple[int, ...]
    candidate: tuple[int, ...]
    margin_reference: float
    margin_candidate: float

    def to_json(self) -> dict:
        return {"token": self.token, "reference": list(self.reference), "candidate": list(self.candidate),
                "margin_reference": self.margin_reference, "margin_candidate": self.margin_candidate}


@dataclass(frozen=True)
class RoutingFlip:
    """The first MoE whose router chooses other experts for some tokens (see the module docstring)."""

    probe: str  # the router's probe with its own error (the root)
    logits: str  # the probe holding the router's logits
    node: str  # the MoE node
    op: str
    k: int
    experts: int
    rows: int
    tokens: tuple[TokenRoute, ...]
    own_error: float | None  # the router's own error (its segment alone: local max abs)
    bits: int | None  # its weights' bits (a MatMulNBits router)
    later: tuple[tuple[str, int], ...]  # later MoE nodes whose routing differs too, with their token counts
    alone: tuple[int, ...] | None = None  # the tokens the router alone (fed the reference's input) routes otherwise

    @property
    def name(self) -> str:
        return "routing (mixture of experts)"

    @property
    def changed(self) -> bool:
        return bool(self.tokens)

    @property
    def margin(self) -> float:
        return min(t.margin_reference for t in self.tokens)

    @property
    def own(self) -> bool:
        """The router's own rounding moves the choice: fed the reference's input it routes some of these tokens
        otherwise; where that was not run, its own error reaches the reference's margin (two logits each moved by up
        to it)."""
        if self.alone is not None:
            return bool(set(self.alone) & {t.token for t in self.tokens})
        return self.own_error is not None and self.margin <= 2 * self.own_error

    def _alone(self) -> str:
        if self.alone is None:
            return ""
        both = sorted(set(self.alone) & {t.token for t in self.tokens})
        return (f"; fed the reference's input, the router alone routes {len(both)} of these {len(self.tokens)} "
                f"token(s) otherwise ({', '.join(map(str, both)) or 'none'})")

    def _tokens(self) -> str:
        def one(t: TokenRoute) -> str:
            return (f"token {t.token}: experts {list(t.reference)} → {list(t.candidate)} (margin between its "
                    f"{ordinal(self.k)} and {ordinal(self.k + 1)} expert {t.margin_reference:.3g} in the reference, "
                    f"{t.margin_candidate:.3g} in the candidate)")
        more = len(self.tokens) - SHOWN
        return "; ".join([*(one(t) for t in self.tokens[:SHOWN]), *([f"{more} more"] if more > 0 else [])])

    @property
    def summary(self) -> str:
        return (f"{self.op} {self.node!r} (top-{self.k} of {self.experts} experts, the router's logits at "
                f"{self.logits}): {len(self.tokens)} of {self.rows} token(s) routed to other experts — "
                f"{self._tokens()}")

    def mechanism(self) -> str:
        rounding = f"the {self.bits}-bit rounding of the router's weights" if self.bits else "the router's rounding"
        error = (f"the router's own error (its segment alone on the reference's input, {self.probe}: "
                 f"{self.own_error:.3g})" if self.own_error is not None else "the router's own error")
        if self.own:
            return (f"{error} against the reference's margin ({self.margin:.3g}){self._alone()}: {rounding} moves "
                    "the choice of experts")
        return (f"{error} against the reference's margin ({self.margin:.3g}){self._alone()}: the error that flowed "
                "into the router moves the choice of experts")

    def text(self) -> str:
        later = "; " + ", ".join(f"{n} routes {c} token(s) otherwise too" for n, c in self.later) \
            if self.later else ""
        return (f"routing change at {self.summary}; {self.mechanism()} — the MoE block's error after it is the "
                f"other experts' output, not its own rounding{later}")

    def to_json(self) -> dict:
        return {"name": self.name, "kind": "routing", "changed": self.changed, "summary": self.summary,
                "node": self.node, "op": self.op, "probe": self.probe, "logits": self.logits, "k": self.k,
                "experts": self.experts, "rows": self.rows, "flipped_rows": len(self.tokens),
                "margin": self.margin, "own_error": self.own_error, "bits": self.bits,
                "alone": list(self.alone) if self.alone is not None else None,
                "mechanism": self.mechanism(), "tokens": [t.to_json() for t in self.tokens],
                "later": [{"node": n, "flipped_rows": c} for n, c in self.later]}


def routes(ref: np.ndarray, got: np.ndarray, k: int) -> list[TokenRoute]:
    """The tokens (rows of [tokens, experts] logits) whose top-k experts differ as sets, with each side's margin."""
    e = ref.shape[-1]
    r, c = ref.reshape(-1, e).astype(np.float64), got.reshape(-1, e).astype(np.float64)
    out = []
    for t in range(min(len(r), len(c))):
        if not (np.isfinite(r[t]).all() and np.isfinite(c[t]).all()):
            continue
        ro, co = np.argsort(-r[t], kind="stable"), np.argsort(-c[t], kind="stable")
        if set(ro[:k].tolist()) == set(co[:k].tolist()):
            continue
        mr = float(r[t][ro[k - 1]] - r[t][ro[k]]) if k < e else float("inf")
        mc = float(c[t][co[k - 1]] - c[t][co[k]]) if k < e else float("inf")
        out.append(TokenRoute(t, tuple(sorted(ro[:k].tolist())), tuple(sorted(co[:k].tolist())), mr, mc))
    return out


def _router(graph, tensor: str) -> list:
    """The router's nodes behind `tensor` (the MoE's logits), nearest first: shape-only ops, its bias, its linear
    layer — stopping at the linear layer's input."""
    made = {o: n for n in graph.node for o in n.output if o}
    out, at = [], tensor
    while at in made and made[at].op_type in ROUTER_OPS:
        node = made[at]
        out.append(node)
        if node.op_type in ("MatMul", "MatMulNBits", "Gemm"):
            break
        at = node.input[0]
    return out


def routing_flip(run: RunState, state: CandidateState, fd: str | None, rc: str | None) -> RoutingFlip | None:
    """The first MoE of the root's or the first divergent probe's stage whose routing differs, or None."""
    from cp_debug.backends.spec import Capability

    probe = fd or rc
    if probe is None or probe not in run.probes or not state.spec.can(Capability.ORT_SESSIONS):
        return None
    i = run.probes[probe].stage
    st = run.stage_of(state.label, i)
    pm = st.probe_map()
    graph = st.onnx().graph
    moes = [n for n in graph.node if n.op_type in MOE_OPS and len(n.input) > 1 and not node_attr(n, "use_sparse_mixer")]
    if not moes or pm is None or i not in state.feeds:
        return None
    by_tensor = {t: n for n, t in pm.tensors.items() if n in run.store and n in state.results}
    held = []  # (moe node, router nodes, the logits' probe, its tensor)
    for node in moes:
        chain = _router(graph, node.input[1])
        tensors = [node.input[1], *(n.input[0] for n in chain if n.op_type in SHAPE_ONLY)]
        logits = next(((by_tensor[t], t) for t in tensors if t in by_tensor), None)
        if logits is not None:
            held.append((node, chain, *logits))
    if not held:
        return None
    from cp_debug.bisect.findings.segment_why import run_segment

    got = run_segment(run, str(state.spec), st.onnx(), state.feeds[i], [t for *_, t in held], spec=state.spec,
                      facts=False).values
    found = []
    for node, chain, name, tensor in held:
        ref = np.asarray(run.store.get(name))
        if tensor not in got or ref.size != got[tensor].size or not ref.size:
            continue
        k = int(node_attr(node, "k", 1))
        flips = routes(ref, got[tensor], k)
        if flips:
            found.append((node, chain, name, ref.shape[-1], ref.size // ref.shape[-1], k, flips))
    if not found:
        return None
    node, chain, name, experts, rows, k, flips = found[0]
    linear = {o for n in chain for o in n.output}
    own = [(n, state.results[n].local.max_abs) for n, t in pm.tensors.items()
           if (t in linear or n == name) and n in state.results and state.results[n].local is not None]
    root, error = max(own, key=lambda x: x[1]) if own else (name, None)
    nbits = next((n for n in chain if n.op_type == "MatMulNBits"), None)
    later = tuple((n.name, len(f)) for n, *_, f in found[1:])
    alone = _alone(run, state, i, root, name, np.asarray(run.store.get(name)), k)
    return RoutingFlip(root, name, node.name, node.op_type, k, experts, rows, tuple(flips),
                       float(error) if error is not None else None,
                       int(node_attr(nbits, "bits", 4)) if nbits is not None else None, later,
                       alone=None if alone is None else tuple(t.token for t in alone))


def _alone(run: RunState, state: CandidateState, i: int, root: str, logits: str, ref: np.ndarray, k: int):
    """The tokens the router alone routes otherwise: its segment (from the root's probe through the logits' one)
    run as the candidate runs it on the reference's input; None where it cannot be cut or run."""
    from cp_debug.bisect.findings.segment_why import root_segment, run_segment

    rs = root_segment(run, state, i, root, through=logits if logits != root else None)
    if rs is None:
        return None
    got = run_segment(run, str(rs.spec), rs.model, rs.feed, [rs.tensor], spec=rs.spec, facts=False).values
    if rs.tensor not in got or np.size(got[rs.tensor]) != ref.size:
        return None
    return routes(ref, got[rs.tensor], k)


class RoutingChange:
    """A MoE whose router sends tokens to other experts, placed at the router with its margin (this module)."""

    fault = "routing"

    @property
    def role(self):
        from cp_debug.bisect.findings.contract import Role

        return Role.WHERE

    def applies(self, c) -> bool:
        return c.ran

    def examine(self, seg):
        from cp_debug.bisect.findings.contract import Finding

        if seg.root is None:
            return None
        flip = routing_flip(seg.run, seg.state, seg.first_divergent, seg.root)
        if flip is None:
            return None
        return Finding(self.fault, self.role, flip.probe, flip.text(), flip.margin, detail=flip, mechanism=True,
                       tie=f"the router of {flip.op} {flip.node!r}")
