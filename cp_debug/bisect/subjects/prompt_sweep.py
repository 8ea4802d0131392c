"""`cpdebug sweep --generate N` over prompts: the share of prompts whose greedy decode flips, and at which step.

The prompts are the rows of `--inputs`' input_ids ([P, S]: one prompt a row), else `--n` prompts of 8 ids drawn with
seeds `--seed`, `--seed`+1, …; the reference is the `--onnx` decoder file or the `--torch` causal LM, the candidate
`ort@DIR`'s decoder file (generation.py, torch_generation.py). Each prompt is decoded N tokens by both (greedy.py);
the first flipped step, the tokens and margins are kept per prompt. The first flipped prompt's MatMulNBits nodes at
accuracy_level=4 are set to level 1 one at a time (`greedy.level_cures`), and the nodes that cure it are then verified
on every prompt: with them at level 1, does each prompt decode the reference's N tokens?

Then the first flipped prompt's flipped step is bisected as `bisect --generate N` does it, by the same request
(`api/prompt_bisect.py` → `api/bisect_run.run_request`: the decode, the level-1 cure, that step's forward): the
prompt written to
OUT/flipped_prompt.npz (what `cpdebug bisect … --inputs OUT/flipped_prompt.npz --generate N` reruns), its outcome,
first divergent probe and root cause said with the setting that cures it.

Written whole to OUT/generate.json (docs/schemas/generate.schema.json); exit 0 where no prompt flips or none that one
setting cures, 4 (degraded) where a prompt flips and a verified setting cures every prompt's decode — the bisect's
`generation.TokenVerdict` rule.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from cp_debug.errors import BadInputError

DEGRADED = 4


@dataclass(frozen=True)
class PromptDecode:
    """One prompt's ids and its first flipped step (None: the N tokens are the reference's)."""

    input_ids: tuple[int, ...]
    flip: dict | None


@dataclass(frozen=True)
class PromptSweep:
    """Every prompt's decode, and the cure found on the first flipped one with the prompts it gives back."""

    reference: str
    candidate: str
    tokens: int
    prompts: tuple[PromptDecode, ...]
    cure: dict | None = None
    bisect: dict | None = None  # the first flipped prompt's flipped step bisected (`api/prompt_bisect.py`)

    @property
    def flipped(self) -> list[PromptDecode]:
        return [p for p in self.prompts if p.flip is not None]

    @property
    def exit_code(self) -> int:
        cured = self.cure is not None and self.cure["kept"] and self.cure["verified"] == len(self.prompts)
        return DEGRADED if self.flipped and cured else 0

    def lines(self) -> list[str]:
        n, total = self.tokens, len(self.prompts)
        out = []
        for i, p in enumerate(self.prompts):
            f = p.flip
            out.append(f"prompt {i}: " + ("the same tokens" if f is None else
                                          f"greedy step {f['step']}: token {f['ref_token']} → {f['cand_token']} "
                                          f"(margins {f['ref_margin']:.3g} / {f['cand_margin']:.3g})"))
        steps = sorted(p.flip["step"] for p in self.flipped)
        out.append(f"--generate {n}: {len(steps)} of {total} prompts flip ({len(steps) / total:.0%})"
                   + (f", at steps {steps}" if steps else ""))
        if self.cure is not None:
            c = self.cure
            if c["kept"]:
                which = ("the first flipped prompt's cure" if len(c["curing"]) == 1 else
                         f"of the first flipped prompt's {len(c['curing'])} cures, each alone, the one that gives the "
                         "most prompts back" if len(c["kept"]) == 1 else "the first flipped prompt's cures together")
                out.append(f"--generate {n}: accuracy_level=1 on {', '.join(c['kept'])} ({which}) gives the "
                           f"reference's tokens back on {c['verified']} of {total} prompts" + (
                               f"; every MatMulNBits at level 1 gives {c['every_node']} of {total} back: the other "
                               "prompts' flips are not the INT8 activations'" if c["verified"] < total
                               and c["every_node"] == c["verified"] else ""))
            else:
                out.append(f"--generate {n}: no single MatMulNBits at accuracy_level=1 cures the first flipped prompt")
        if self.bisect is not None:
            b = self.bisect
            out.append(f"--generate {n}: prompt {b['prompt']}'s greedy step {b['step']} bisected (the prompt and the "
                       f"reference's {b['step']} tokens before it fed to both; exit {b['exit_code']}): first divergent "
                       f"{b['first_divergent'] or 'none'}, root cause {b['root_cause'] or 'none'} — {b['verdict']}")
            if b.get("setting"):
                out.append(f"--generate {n}: the setting: {b['setting']}")
            out.append(f"--generate {n}: cpdebug bisect … --inputs {b['inputs']} --generate {n} reruns it")
        return out

    def to_json(self) -> dict:
        steps = [p.flip["step"] for p in self.flipped]
        return {"schema": "cp_debug.generate/1", "reference": self.reference, "candidate": self.candidate,
                "tokens": self.tokens,
                "prompts": [asdict(p) | {"input_ids": list(p.input_ids)} for p in self.prompts],
                "flipped": len(steps), "share": len(steps) / len(self.prompts), "steps": steps, "cure": self.cure,
                "bisect": self.bisect, "exit_code": self.exit_code}


def prompt_rows(inputs: Path | None, n: int, seed: int, dec) -> list[np.ndarray]:
    """The prompts, [1, S] each: `inputs`' input_ids rows, else `n` seeded ones."""
    from cp_debug.bisect.subjects.decoder_feed import IDS, seeded_ids
    from cp_debug.bisect.subjects.feeds import load_npz_inputs

    if inputs is None:
        return [seeded_ids(dec, seed + i) for i in range(n)]
    given = load_npz_inputs(inputs)
    if IDS not in given:
        raise BadInputError(f"--generate: {inputs} holds no {IDS} (one prompt a row, [prompts, length])")
    ids = np.asarray(given[IDS])
    ids = ids.reshape(1, -1) if ids.ndim == 1 else ids
    if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
        raise BadInputError(f"--generate: {inputs}'s {IDS} must be integer token ids, [prompts, length] (got "
                            f"{ids.dtype} {list(ids.shape)})")
    return [row[None].astype(np.int64) for row in ids]


def sweep_prompts(reference: str, torch_model: bool, specs: Sequence, n_tokens: int, inputs: Path | None, n: int,
                  seed: int) -> PromptSweep:
    """Decode every prompt with the reference (`reference`: an --onnx file, or --torch's FILE.py:FUNC) and the
    candidate; the first flipped prompt's cure verified on all (its flipped step is bisected by
    `api/prompt_bisect.bisect_flip`, above the engine)."""
    from cp_debug.bisect.subjects.decoder_feed import DecoderInputs
    from cp_debug.bisect.subjects.greedy import first_flip, greedy, level4_nodes, level_cures, with_levels
    from cp_debug.bisect.subjects.torch_generation import candidate_decoder_file
    from cp_debug.graph.model import load_onnx

    cand_path = candidate_decoder_file(specs)
    cand = load_onnx(cand_path)
    dec = DecoderInputs.of(cand, cand_path)
    if dec is None:
        raise BadInputError(f"--generate: the candidate's {cand_path} has no input_ids input (no decoder LLM file)")
    decode = _reference(reference, torch_model, seed)
    prompts, refs = [], []
    for ids in prompt_rows(inputs, n, seed, dec):
        ref = decode(ids, n_tokens)
        flip = first_flip(ref, greedy(cand, dec, ids, n_tokens))
        refs.append((ids, ref))
        prompts.append(PromptDecode(tuple(int(t) for t in ids.reshape(-1)), None if flip is None else asdict(flip)))
    first = next((i for i, p in enumerate(prompts) if p.flip is not None), None)
    cure = None
    if first is not None and level4_nodes(cand):
        found = level_cures(cand, dec, *refs[first])

        def given_back(nodes) -> int:  # the prompts that decode the reference's tokens with `nodes` at level 1
            cured = with_levels(cand, nodes)
            return int(sum(greedy(cured, dec, ids, n_tokens, ref.tokens).tokens == ref.tokens for ids, ref in refs))

        kept, verified, every = _kept(found.curing, given_back, found.nodes)
        cure = {"nodes": list(found.nodes), "curing": list(found.curing), "all_at_level1": found.all_at_level1,
                "prompt": first, "verified": verified, "kept": list(kept), "every_node": every}
    return PromptSweep(str(reference), str(cand_path), n_tokens, tuple(prompts), cure)


def _kept(curing: Sequence[str], given_back, every: Sequence[str]) -> tuple[tuple[str, ...], int, int]:
    """Of the first flipped prompt's cures (each node alone gives its tokens back), the one that gives the most prompts
    back (`given_back(nodes)`), fewer nodes first where they tie; all of them together where that gives more back (a
    near tie's prompt is cured by nodes that cure no other: the massive-channel Llama's last down_proj beside lm_head,
    1 and 4 of 6 prompts); with it, its count and that of `every` level-4 node at level 1 (0 where none cures). Each
    node set is decoded over the prompts once: `every` is often one of the sets tried (a single level-4 node)."""
    if not curing:
        return (), 0, 0
    counted: dict[frozenset, int] = {}

    def count(nodes: Sequence[str]) -> int:
        key = frozenset(nodes)
        if key not in counted:
            counted[key] = given_back(list(nodes))
        return counted[key]

    tried = [((node,), count([node])) for node in curing]
    if len(curing) > 1:
        tried.append((tuple(curing), count(curing)))
    kept, verified = max(tried, key=lambda t: (t[1], -len(t[0])))
    return kept, verified, count(every)


def _reference(reference: str, torch_model: bool, seed: int):
    """(ids, n) → the reference's greedy Decode: the --torch module's (prefix re-run) or the --onnx file's."""
    if torch_model:
        from cp_debug.bisect.subjects.torch_generation import causal_lm, torch_greedy

        module, _ = causal_lm(reference, seed)
        return lambda ids, n: torch_greedy(module, ids, n)
    from cp_debug.bisect.subjects.decoder_feed import DecoderInputs
    from cp_debug.bisect.subjects.greedy import greedy
    from cp_debug.graph.model import load_onnx

    model = load_onnx(reference)
    dec = DecoderInputs.of(model, reference)
    if dec is None:
        raise BadInputError(f"--generate decodes a decoder LLM file: {Path(reference).name} has no input_ids input")
    return lambda ids, n: greedy(model, dec, ids, n)


def write_prompt_sweep(result: PromptSweep, out: Path) -> Path:
    """OUT/generate.json, written whole."""
    from cp_debug.files import write_json

    return write_json(Path(out) / "generate.json", result.to_json(), indent=1, parents=True)
