"""`bisect --generate N` on a decoder LLM file: greedy decoding first, then the forward of the step that flips.

The reference (the `--onnx` file) and the candidate (its `ort@DIR` file of the same name, else the same file)
each decode N tokens from the prompt (`--inputs` input_ids, else seeded ids) with their KV cache (greedy.py). Where
a token differs, the step, both tokens and margins are said, each MatMulNBits at accuracy_level=4 is tried at level
1 alone (the setting that cures it, verified on the decode; a QDQ file's 4-bit MatMuls, which ONNX Runtime fuses at
level 4, each unfused alone: `fused_dq.py`), and the bisect runs that step's forward: the prompt and
the reference's tokens before the flip fed to both as one prefill, so the last position's logits are the step's.
Where none differs, the bisect runs the prompt's forward, as without --generate.

Each file is loaded as few times as that needs (issue 116 item 5): the candidate decodes on a session of its file as
written (the file's load check then makes no other), kept where the candidate is ONNX Runtime on the CPU: it runs the
candidate's graph as deployed on the step's feed (`unprobed.as_written`; no session of the file made for that); the
reference, where it runs the file as it is (ONNX Runtime,
FP32, CPU), decodes on the session the engine makes for its probed run, before stage 0's feed (`PendingDecode`,
`stages/lent.py`): its tokens are then the probed session's, the values the bisect compares with; the candidate's
decode is then made while that session is made on its helper thread (`PendingDecode.candidate`: s24, 1.4 CPU s of a
0.5 B INT4 file's, in the load before it). A decode whose session ONNX Runtime refuses is that file's load check's line
(exit 3).

A flipped token that a runtime setting alone causes (its level-1 cure verified on the decode) is beyond what the
file's precision explains, whatever that step's forward says: the subject's decision verdict (`TokenVerdict`, the
hook a detector's boxes use) makes the candidate degraded at least. The builder's Qwen3 file at level 4 is a local
fault at lm_head's logits already; the RTN file's flipped step (9) has logits at 0.99× int4w-a8's budget, and would be
"within precision" with a flipped token and its cure said — exit 0 — without it (since s9 its lm_head's own error,
3.1 units of the weights' rounding, is a local fault there: `compare/weight_only.py`).
"""

from __future__ import annotations

import functools
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, Sequence

import numpy as np

from cp_debug.errors import BadInputError


def generation_subject(path: str | Path, inputs: str | Path | None, seed: int, n: int, specs: Sequence):
    """The subject of the step that flips, with the decode's lines among its warnings (said on the terminal too)."""
    from cp_debug.bisect.subjects.decoder_feed import IDS, DecoderInputs, seeded_ids
    from cp_debug.bisect.subjects.feeds import load_npz_inputs
    from cp_debug.bisect.subjects.greedy import greedy
    from cp_debug.bisect.subjects.loaders import onnx_subject
    from cp_debug.graph.model import load_onnx

    path = Path(path)
    ref_model = load_onnx(path)
    dec = DecoderInputs.of(ref_model, path)
    if dec is None:
        raise BadInputError(f"--generate decodes a decoder LLM file: {path.name} has no input_ids input")
    cand_path = _candidate_file(path, specs)
    cand_model = load_onnx(cand_path) if cand_path != path else ref_model
    cand_dec = DecoderInputs.of(cand_model, cand_path)
    if cand_dec is None:
        raise BadInputError(f"--generate: the candidate's {cand_path} has no input_ids input")
    given = load_npz_inputs(inputs) if inputs is not None else {IDS: seeded_ids(dec, seed)}
    if IDS not in given:
        raise BadInputError(f"--generate: {inputs} holds no {IDS} (the prompt's token ids; it holds "
                            f"{', '.join(given) or 'nothing'})")
    ids = given[IDS]
    ids = np.asarray(ids).reshape(1, -1)

    @functools.cache
    def candidate():  # its file loaded as written: its load check's proof; decoded once
        with _refused_said(cand_path, path, specs):
            return greedy(cand_model, cand_dec, ids, n, path=cand_path, hold=cand_path != path and _cpu_ort(specs, 1))

    def answer(run=None) -> DecodeAnswer:
        from cp_debug.bisect.subjects.weight_cures import float_arrays

        cand = candidate()
        ref = greedy(ref_model, dec, ids, n, path=None if run else path, run=run)
        from cp_debug.bisect.subjects.norm_cures import reference_norms

        return decode_answer(ref, cand_model, cand_dec, cand_path, ids, n, f"the reference's tokens "
                             f"{list(ref.tokens)}", cand=cand, reference_weights=lambda: float_arrays(ref_model),
                             norms=reference_norms(ref_model))

    # a candidate taking more inputs than the reference (a builder's decoder file against a plain export) is fixed
    # to the step's prefill as the deployed files are mapped (`deployed._as_prefill`): the step is known first
    if cand_path != path and _on_probed_session(specs, ref_model) and not dec.sliding \
            and set(cand_dec.names) <= set(dec.names):
        from cp_debug.bisect.subjects.decoder_feed import decoder_feed
        from cp_debug.bisect.subjects.deployed import refuse_unloadable_given

        subject = onnx_subject(path, None, seed, ids=ids)

        def decode(run) -> DecodeAnswer:
            found = answer(run)
            subject.inputs = decoder_feed(dec, {IDS: found.prefix})
            found.told(subject)  # its verdict (the lines: `lent.py` says them)
            return found

        subject.pending_decode = PendingDecode(decode, lambda: refuse_unloadable_given(path, specs), candidate)
        return subject
    candidate()
    with _refused_said(path, path, specs):
        found = answer()
    return found.told(onnx_subject(path, None, seed, ids=found.prefix))


@contextmanager
def _refused_said(file: Path, path: Path, specs: Sequence):
    """A decode of `file` (the --onnx `path`, or the candidate's) whose session ONNX Runtime refuses: the file's load
    check says so (its own line, exit 3) in place of the session's error (an internal error, exit 70, before)."""
    from cp_debug.bisect.subjects.deployed import refuse_unloadable, refuse_unloadable_given

    try:
        yield
    except Exception:
        if file == path:
            refuse_unloadable_given(path, specs)
        else:
            refuse_unloadable(list(specs)[1], [file], reference=path)
        raise


@dataclass(frozen=True)
class PendingDecode:
    """The reference's decode, left for the engine to run on the reference's probed session once it is made
    (`stages/lent.py`): the FP32 file loaded once (a 0.5 B builder file: 2 GB, 5 s a load), not once to decode and
    again to be probed. `decode(run)`: the decode with `run` the session's forward (logits and cache only), the
    subject fed the step's prefix, its answer (lines said then); `check()`: the file's load check as written (exit
    3 where ONNX Runtime refuses it), run where that session cannot be made; `candidate()`: the candidate's decode of
    its file as written (run once: by `lent.start_lending` while the reference's session is made on its helper
    thread, else by `decode`)."""

    decode: Callable
    check: Callable[[], None]
    candidate: Callable[[], object] | None = None


def _cpu_ort(specs: Sequence, k: int) -> bool:
    """Whether the run's k-th backend (0: the reference) is ONNX Runtime on the CPU."""
    from cp_debug.backends.spec import Capability

    spec = list(specs)[k] if len(specs) > k else None
    return spec is not None and spec.can(Capability.ORT_SESSIONS) and spec.device == "cpu"


def _on_probed_session(specs: Sequence, model) -> bool:
    """Whether the reference runs the --onnx file as it is (ONNX Runtime, FP32, CPU: no precision transform, so its
    probed session computes the file's outputs) and the file's graph is fed the same whatever the prompt (no If,
    whose taken branch `onnx_subject` inlines from the feed). A file with sliding-window layers is decoded on a
    session of its own (the caller): the probed graph drops their cache outputs (`without_sliding_presents`)."""
    from cp_debug.backends.spec import Capability

    ref = list(specs)[0] if specs else None
    return (ref is not None and ref.can(Capability.ORT_SESSIONS) and ref.onnx_dir is None and ref.precision == "fp32"
            and ref.device == "cpu" and not any(node.op_type == "If" for node in model.graph.node))


@dataclass(frozen=True)
class DecodeAnswer:
    """The decode's lines (said first), the forward to bisect (the prompt and the reference's tokens before the
    flip, else the prompt) and the verdict a flipped token brings (None: none flipped)."""

    lines: tuple[str, ...]
    prefix: np.ndarray
    verdict: "TokenVerdict | None" = None

    def told(self, subject):
        """`subject` (the bisect of `prefix`) with the lines among its warnings and the flip as its verdict."""
        verdict = self.verdict
        if verdict is not None:
            subject.detection_verdict = lambda ref_out, cand_out: verdict
        subject.warnings[:0] = self.lines
        subject.told = (*self.lines, *subject.told)
        return subject


def decode_answer(ref, cand_model, cand_dec, cand_path, ids: np.ndarray, n: int, first: str,
                  cand=None, reference_weights: Callable[[], list] | None = None,
                  norms: tuple[bool, float] | None = None) -> DecodeAnswer:
    """The candidate file's decode (`cand`, else made here) against the reference's (`ref`, a greedy.Decode): the
    first flipped step and the MatMulNBits level that alone cures it (verified against `ref`'s tokens); where no
    setting does, the file's norms as the reference's (`norms`: its one kind and epsilon, `norm_cures.py`), then the
    quantized weight whose float values (`reference_weights()`: the reference's float weights) alone do
    (`weight_cures.py`); `first`: the opening line's words."""
    from cp_debug.bisect.subjects.greedy import first_flip, greedy, level4_nodes, level_cures

    if cand is None:
        cand = greedy(cand_model, cand_dec, ids, n, path=cand_path)
    flip = first_flip(ref, cand)
    lines = [f"--generate {n}: {first}"]
    if flip is None:
        lines.append(f"--generate {n}: the candidate ({cand_path}) decodes the same {n} tokens")
        return DecodeAnswer(tuple(lines), ids)
    lines.append(f"--generate {n}: the first token that differs: {flip.line()}; bisecting that step's "
                 f"forward (the prompt and the reference's {flip.step} tokens before it fed to both)")
    builder = (Path(cand_path).parent / "genai_config.json").is_file()
    cure: DecodeCure | None
    if level4_nodes(cand_model):
        cure = level_cures(cand_model, cand_dec, ids, ref, builder, step=flip.step)
    else:  # a QDQ file's 4-bit weights, which ONNX Runtime fuses into MatMulNBits at level 4 as it loads them
        from cp_debug.bisect.subjects.fused_dq import dq_cures

        cure = dq_cures(cand_model, cand_dec, ids, ref)
    if cure is not None:
        lines.append(f"--generate {n}: {cure.line()} (verified on the {n}-token decode)")
    if norms is not None and (cure is None or not cure.curing):  # a file whose norms are another function
        from cp_debug.bisect.subjects.norm_cures import norm_cure

        tried = norm_cure(cand_model, cand_dec, ids, ref, norms)
        if tried is not None:
            lines.append(f"--generate {n}: {tried.line()} (verified on the {n}-token decode)")
            cure = tried if tried.cured else cure
    cured_by = cure.curing if cure is not None else ()
    searched = (cure is None or not cure.whole_file) and reference_weights is not None
    from cp_debug.graph.onnx_files import total_nbytes

    size = total_nbytes(cand_model) if searched else 0
    if size > WEIGHT_SEARCH_BYTES:
        searched = False  # each of its decodes is a float copy of the file: a 0.5 B model's filled 29 GB of disk
        lines.append(f"--generate {n}: no weight search past {WEIGHT_SEARCH_BYTES >> 20} MB of weights (its file "
                     f"{size / 2**20:.0f} MB; each try decodes a float copy of it): name a node "
                     "for the quantizer's nodes_to_exclude and bisect that file")
    if searched:
        from cp_debug.bisect.subjects.weight_cures import weight_cures

        weights = weight_cures(cand_model, reference_weights(), cand_dec, ids, ref, builder)
        if weights is not None:
            lines.append(f"--generate {n}: {weights.line()} (verified on the {n}-token decode)")
            cure = weights  # the verdict left to the step's forward: a weight's rounding is the file's precision
            # (a healthy OLMo's RTN file: one weight in float gives a 0.495-logit margin back), unless it is beyond
    prefix = np.concatenate([ids, np.asarray([ref.tokens[:flip.step]], ids.dtype)], axis=1)
    verdict = TokenVerdict(True, f"--generate {n}: {flip.line()}" + (f"; {cure.line()}" if cure else ""),
                           cured_by)
    return DecodeAnswer(tuple(lines), prefix, verdict)


class DecodeCure(Protocol):
    """What each kind of decode cure says (a MatMulNBits level, a fused DequantizeLinear, the norms, the weights): the
    nodes that alone give the reference's tokens back, whether a file-wide change does (`whole_file`: no weight
    search after it), and its line."""

    @property
    def curing(self) -> tuple[str, ...]: ...

    @property
    def whole_file(self) -> bool: ...

    def line(self) -> str: ...


WEIGHT_SEARCH_BYTES = 256 << 20  # the weights a file may hold for `weight_cures`' search (up to 40 float copies)


def _candidate_file(path: Path, specs: Sequence) -> Path:
    """The first candidate's file: `ort@DIR`'s file of the --onnx file's name in DIR, else the --onnx file."""
    for spec in list(specs)[1:2]:
        if getattr(spec, "onnx_dir", None) is not None:
            cand = Path(spec.onnx_dir) / path.name
            if not cand.is_file():
                raise BadInputError(f"--generate: {spec.onnx_dir} holds no {path.name} (the candidate's file of the "
                                    "--onnx file's name)")
            return cand
    return path


@dataclass(frozen=True)
class TokenVerdict:
    """The decode's answer, as the subject's detection verdict (`verdict._outcome` reads `judge`): a flipped token
    that the settings in `cured_by` alone cause is degraded at least; one no single setting cures is left to the
    step's forward (a token of a small margin may flip within the file's precision)."""

    changed: bool
    summary: str
    cured_by: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return {"changed": self.changed, "summary": self.summary, "cured_by": list(self.cured_by)}

    def judge(self, precision: str) -> "_TokenJudgement":
        from cp_debug.compare.noise import Outcome

        if self.cured_by:
            return _TokenJudgement(Outcome.DEGRADED, f"a greedy token flips, beyond {precision}: {self.summary}")
        return _TokenJudgement(Outcome.WITHIN_PRECISION, f"a greedy token flips, no single setting cures it: "
                               f"{self.summary}")


@dataclass(frozen=True)
class _TokenJudgement:
    outcome: object
    reason: str
