"""Greedy decoding of a decoder LLM file in ONNX Runtime, and the first generated token that differs (issue 116).

One forward of a prompt rarely shows what a user meets: the token that flips several steps in, where the logit margin
is thin. `greedy(model, dec, ids, n)` decodes N tokens with the file's KV cache (each step feeds the new token, the
mask over the whole sequence and the cache the last step returned; a file without a cache re-runs the prefix) and
keeps each step's top-1 margin; `first_flip(ref, cand)` names the step, the two tokens and both margins.

`level_cures(model, dec, ids, ref_tokens)` is the runtime setting as a candidate: ONNX Runtime's MatMulNBits at
`accuracy_level=4` quantizes its input to INT8 per block, so a massive-activation channel rounds the rest of its
block to zero. The whole file at level 1 is decoded first; where that gives the reference's tokens back, the nodes
are halved (a half set to level 1 in a copy, graphsurgeon, and the decode rerun; a half that does not give the
tokens back is dropped) down to single nodes, each verified alone: the nodes whose setting alone gives the
reference's tokens back. A decode checked against the reference's tokens stops at the first that differs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from cp_debug.bisect.subjects.decoder_feed import IDS, DecoderInputs, decoder_feed, positions, present_of

if TYPE_CHECKING:  # pragma: no cover
    from pathlib import Path

    import onnx

INT8_LEVEL = 4  # MatMulNBits accuracy_level: 4 is INT8 activations, 1 FP32 (2 FP16, 3 BF16)
CURE_LEVEL = 1


@dataclass(frozen=True)
class Decode:
    """N greedy tokens and the top-1 minus top-2 logit at each step."""

    tokens: tuple[int, ...]
    margins: tuple[float, ...]


@dataclass(frozen=True)
class Flip:
    """The first step whose token differs: the reference's token and margin there, the candidate's."""

    step: int
    ref_token: int
    cand_token: int
    ref_margin: float
    cand_margin: float

    def line(self) -> str:
        return (f"greedy step {self.step}: token {self.ref_token} → {self.cand_token} (the reference's margin "
                f"{self.ref_margin:.3g}, the candidate's {self.cand_margin:.3g})")


@dataclass(frozen=True)
class LevelCure:
    """The level-4 MatMulNBits nodes, those whose level 1 alone gives the reference's tokens back, and whether the
    whole file at level 1 does."""

    nodes: tuple[str, ...]
    curing: tuple[str, ...] = field(default_factory=tuple)
    all_at_level1: bool = False
    builder: bool = True  # the file is the model builder's (genai_config.json beside it), else MatMulNBitsQuantizer's
    # where level 1 does not give the tokens back but moves the first flip past the candidate's (`step`): the nodes
    # whose level 1 alone does, each with the step its decode then flips at (a later step's cause is another)
    step: int | None = None
    deferring: tuple[tuple[str, int], ...] = ()
    level1_step: int | None = None  # the step the whole file at level 1 flips at

    @property
    def whole_file(self) -> bool:
        """The whole file at level 1 gives the tokens back (`generation.DecodeCure`)."""
        return self.all_at_level1

    def line(self) -> str:
        if self.curing and not self.builder:
            return (f"accuracy_level={CURE_LEVEL} on {', '.join(self.curing)} alone gives the reference's tokens back "
                    f"(of {len(self.nodes)} MatMulNBits at level {INT8_LEVEL}); in the quantizer's terms "
                    f"MatMulNBitsQuantizer(..., accuracy_level={CURE_LEVEL}) or nodes_to_exclude="
                    f"{[_builder_name(n) for n in self.curing]!r}")
        if self.curing:  # each node alone cures: each is said, its exclusion an alternative to the others'
            names = [_builder_name(n) for n in self.curing if not prequantized(n)]  # a checkpoint's own: none
            exclude = "".join(f" or nodes_to_exclude={n}" if not i else f" (or nodes_to_exclude={n})"
                              for i, n in enumerate(names))
            return (f"accuracy_level={CURE_LEVEL} on {' alone, or on '.join(self.curing)} alone gives the reference's "
                    "tokens back "  # these words are what api/prompt_bisect reads the setting by
                    f"(of {len(self.nodes)} MatMulNBits at level {INT8_LEVEL}); in the builder's terms "
                    f"--extra_options accuracy_level={CURE_LEVEL}{exclude}")
        if self.all_at_level1:
            return f"no single node: every MatMulNBits at accuracy_level={CURE_LEVEL} gives the tokens back"
        if self.deferring:
            (first, m), rest = self.deferring[0], self.deferring[1:]
            moved = f"{first} alone at level {CURE_LEVEL} moves the first flip to step {m}" + "".join(
                f", {n} alone to step {k}" for n, k in rest)
            whose = "that node's" if not rest else "those nodes'"
            later = (f"step {m}'s not the INT8 activations' (every node at level {CURE_LEVEL} flips there too)"
                     if not rest and m == self.level1_step else "the later flip another cause's")
            return (f"accuracy_level={CURE_LEVEL} does not give the tokens back, yet gives greedy step {self.step}'s "
                    f"token back: {moved} (of {len(self.nodes)} MatMulNBits at level {INT8_LEVEL}) — step "
                    f"{self.step}'s flip is {whose} INT8 activations', {later}")
        return f"accuracy_level={CURE_LEVEL} does not give the tokens back: not the INT8 activations"


def prequantized(node: str) -> bool:
    """Whether the builder's node holds a pre-quantized checkpoint's weight as it is (GPTQ, AWQ: the builder names
    it `{its MatMul}NBits`, `/model/layers.0/attn/o_proj/MatMulNBits`): its `nodes_to_exclude` does not reach it (the
    checkpoint has no float weight to keep), its `accuracy_level` does."""
    return node.endswith("/MatMulNBits")


def _builder_name(node: str) -> str:
    """The MatMul a quantizer's node was made of (the builder's `/lm_head/MatMul_Q4` → `/lm_head/MatMul`;
    MatMulNBitsQuantizer's QDQ `node_linear_14_matmul_Q4` → `node_linear_14`): the name its nodes_to_exclude takes."""
    for tail in ("_matmul_Q4", "_matmul_Q8", "_Q4", "_Q8"):
        if node.endswith(tail):
            return node[: -len(tail)]
    return node


def greedy(model: "onnx.ModelProto", dec: DecoderInputs, ids: np.ndarray, n: int,
           against: Sequence[int] | None = None, path: "str | Path | None" = None,
           run: "Callable[[dict], dict] | None" = None, hold: bool = False,
           config: "dict[str, str] | None" = None) -> Decode:
    """`n` greedy tokens after the prompt `ids` ([1, S] or [S]) in ONNX Runtime on the CPU; with `against` (the
    reference's tokens) it stops at the first token that differs (the decode then holds fewer than `n`). `path`: the
    file `model` was read from, unchanged: its session is made from the file itself, so the run's load check of it
    (`backends/ort/ort_load.py`) makes no second one. `run`: a forward of the file already loaded (feed → its
    outputs by name, the logits and the cache among them): no session made here. `hold` (with `path`): the session
    is made with the run's default determinism's options and kept once the decode is done (`ort_sessions.hold`): the
    candidate's graph as deployed is then run on it (`unprobed.as_written`), the file not loaded again for that.
    `config`: session config entries of its session."""
    if "logits" not in {o.name for o in model.graph.output}:
        from cp_debug.errors import BadInputError

        raise BadInputError(f"--generate decodes a file's logits: {path or 'the file'} has none (outputs "
                            f"{', '.join(o.name for o in model.graph.output)[:120]}; the builder's exclude_lm_head "
                            "writes hidden states)")
    sess = det = None
    first: list = []  # the session's first run (feed, outputs): held with it (the graph as deployed's, on that feed)
    if run is None:
        from cp_debug.determinism import Determinism

        det = Determinism() if hold and path is not None else None
        sess = _session(model, path, det, config)
        outs = [o.name for o in sess.get_outputs()]

        def run(feed: dict) -> dict:
            got = dict(zip(outs, sess.run(outs, feed)))
            if not first:
                first.append((feed, got))
            return got
    prompt = [int(t) for t in np.asarray(ids).reshape(-1)]
    seq, step_ids, cache = list(prompt), list(prompt), None
    tokens, margins = [], []
    for _ in range(n):
        if dec.past:
            given = {IDS: np.array([step_ids])}
            if cache is not None:
                given.update(cache)
            feed = decoder_feed(dec, given)
            if "attention_mask" in feed:
                feed["attention_mask"] = np.ones((1, len(seq)), feed["attention_mask"].dtype)
            if "position_ids" in feed:
                feed["position_ids"] = positions(dec, len(seq) - len(step_ids), len(seq))
        else:
            feed = decoder_feed(dec, {IDS: np.array([seq])})
        res = _ran(run, feed, len(tokens), path)
        logits = np.asarray(res["logits"])[0, -1].astype(np.float64)
        t = int(np.argmax(logits))
        top2 = np.partition(logits, -2)[-2:]
        tokens.append(t)
        margins.append(float(top2[1] - top2[0]))
        if against is not None and t != against[len(tokens) - 1]:
            break
        seq.append(t)
        step_ids = [t]
        cache = {k: res[present_of(k)] for k in dec.past}
    if sess is not None and det is not None:
        from cp_debug.ort_sessions import hold as keep

        keep(path, sess, det.numbers_key(), first[0] if first else None)
    return Decode(tuple(tokens), tuple(margins))


def _ran(run: "Callable[[dict], dict]", feed: dict, step: int, path) -> dict:
    """`run(feed)`; ONNX Runtime failing on a file it loaded (the builder's FP16 CPU file at the first step with a
    cache: "Shape mismatch attempting to re-use buffer") is the backend's failure, said with the step (exit 3)."""
    try:
        return run(feed)
    except Exception as err:
        if not type(err).__module__.startswith("onnxruntime"):
            raise
        from cp_debug.errors import BackendRuntimeError, first_line

        import re

        text = first_line(err, None)
        node = re.search(r"Name:'([^']+)'", text)
        said = (f"node {node.group(1)}: " if node else "") + text.rsplit(" : ", 1)[-1].strip()[:240]
        when = "the prompt's prefill" if step == 0 else (f"greedy step {step} (with the KV cache of the steps "
                                                          "before; without --generate the prompt's forward runs)")
        raise BackendRuntimeError(f"ONNX Runtime fails running {path or 'the file'} at {when}: {said}") from err


def first_flip(ref: Decode, cand: Decode) -> Flip | None:
    for i, (a, b) in enumerate(zip(ref.tokens, cand.tokens)):
        if a != b:
            return Flip(i, a, b, ref.margins[i], cand.margins[i])
    return None


def level4_nodes(model: "onnx.ModelProto") -> tuple[str, ...]:
    return tuple(n.name for n in model.graph.node if n.op_type == "MatMulNBits"
                 and any(a.name == "accuracy_level" and a.i == INT8_LEVEL for a in n.attribute))


def with_levels(model: "onnx.ModelProto", nodes: Sequence[str], level: int = CURE_LEVEL) -> "onnx.ModelProto":
    """A copy of `model` with the named MatMulNBits nodes at `level`: the message copied and their attribute set,
    nothing else of it touched (graphsurgeon's import and export took 0.7 s of a 0.5 B INT4 file's level-1 decode)."""
    import onnx
    from onnx import helper

    out = onnx.ModelProto()
    out.CopyFrom(model)
    names = set(nodes)
    for node in out.graph.node:
        if node.name in names:
            attr = next((a for a in node.attribute if a.name == "accuracy_level"), None)
            if attr is None:
                node.attribute.append(helper.make_attribute("accuracy_level", level))
            else:
                attr.i = level
    return out


def level_cures(model: "onnx.ModelProto", dec: DecoderInputs, ids: np.ndarray, ref: Decode,
                builder: bool = True, step: int | None = None) -> LevelCure:
    """The level-4 MatMulNBits whose level 1 alone gives `ref`'s tokens back: none where the whole file at level 1
    does not (one decode, where a node at a time was one per node: 121 on a 0.5 B builder file), else found by
    halving (a half at level 1 that does not give them back is dropped; each node named is verified alone).
    `builder`: the cure said in the model builder's terms, else in MatMulNBitsQuantizer's. `step`: the candidate's
    first flipped step; where the whole file at level 1 flips later than it, the step's own flip is the INT8
    activations' and a later one another cause's: the nodes whose level 1 alone gets past `step` are found by
    halving too, each said with the step its decode then flips at (Mistral's inner file: down_proj's, 1 → 3)."""
    from cp_debug.graph.weight_store import referring

    nodes = level4_nodes(model)
    if not nodes:
        return LevelCure(nodes, builder=builder)
    light = referring(model)  # the tensors read in from a user's data file referred to there: each copy is small

    def decoded(group: Sequence[str], n: int = len(ref.tokens)) -> Decode:
        return greedy(with_levels(light, group), dec, ids, n, ref.tokens[:n])

    def cures(group: Sequence[str]) -> bool:
        return decoded(group).tokens == ref.tokens

    whole = decoded(nodes)
    if whole.tokens == ref.tokens:
        return LevelCure(nodes, halved(nodes, cures), True, builder)
    if step is None or len(whole.tokens) - 1 <= step:
        return LevelCure(nodes, builder=builder)
    past = halved(nodes, lambda group: decoded(group, step + 1).tokens == ref.tokens[:step + 1])
    alone = {n: decoded([n]) for n in past}
    whole_cure = tuple(n for n in past if alone[n].tokens == ref.tokens)  # alone, not beside the others at 1
    if whole_cure:
        return LevelCure(nodes, whole_cure, False, builder)
    return LevelCure(nodes, builder=builder, step=step, level1_step=len(whole.tokens) - 1,
                     deferring=tuple((n, len(alone[n].tokens) - 1) for n in past))


def halved(nodes: Sequence[str], cures: Callable[[Sequence[str]], bool]) -> tuple[str, ...]:
    """The nodes of `nodes` (all of which together `cures`) that cure alone, found by halving: a half that does not
    cure is dropped, each node named is verified alone (a file of one node: verified already)."""
    curing: list[str] = []
    pending = [nodes]
    while pending:
        group = pending.pop(0)
        if len(group) == 1:  # a single node, verified alone (the whole file's decode verified a file of one)
            if len(nodes) == 1 or cures(group):
                curing.append(group[0])
            continue
        half = len(group) // 2
        pending.extend(part for part in (group[:half], group[half:]) if len(part) == 1 or cures(part))
    order = {name: i for i, name in enumerate(nodes)}
    return tuple(sorted(curing, key=order.__getitem__))


def _session(model: "onnx.ModelProto", path: "str | Path | None" = None, det=None,
             config: "dict[str, str] | None" = None):
    from cp_debug.graph.session import point_at_weights, session_source
    from cp_debug.ort_sessions import open_session, session_options

    so = session_options(quiet=True, config=config, spinning=False) if det is None else \
        det.ort_session_options(spinning=False)  # a decode's runs are short: idle threads would busy-wait between
    if det is not None:
        for key, value in (config or {}).items():
            so.add_session_config_entry(str(key), str(value))
    if path is not None:  # the file as written (its external data read from beside it)
        return open_session(str(path), so, **(det.ort_session_kwargs() if det is not None else {}))
    point_at_weights(so, model)
    with session_source(model) as src:
        return open_session(src, so)
