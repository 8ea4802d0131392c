"""`bisect --torch FILE.py:FUNC -b torch,ort@DIR --generate N`: the PyTorch causal LM as the reference of the decode.

FUNC returns (a transformers causal LM — `AutoModelForCausalLM.from_pretrained(folder)` — or any module whose
forward takes input_ids and returns the logits, its example input_ids); the candidate is the builder's file in DIR
(`DIR/model.onnx`, else DIR's one .onnx file). The module decodes N greedy tokens re-running the prefix (its cache
off: the export is input_ids → logits), the file with its own KV cache (greedy.py); the first step whose token
differs, both margins, and each MatMulNBits at accuracy_level=4 set to 1 alone, verified against the module's tokens.
Then that step's forward is bisected as a `--torch` subject: the module exported at the prefix's length (the prompt
and the module's tokens before the flip), the file fixed to that prefill (its mask, positions and empty cache made
by cp_debug: `deployed._as_prefill`) and its probes matched to the module's by computation (`probes/foreign.py`;
the builder's scope names read as the HF model's: `decoder_feed.builder_scope`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from cp_debug.errors import BadInputError


def torch_greedy(module, ids: np.ndarray, n: int):
    """`n` greedy tokens of the PyTorch model after `ids` ([1, S]), re-running the prefix, with each step's margin."""
    import torch

    from cp_debug.bisect.subjects.greedy import Decode

    seq = [int(t) for t in np.asarray(ids).reshape(-1)]
    tokens, margins = [], []
    with torch.no_grad():
        for _ in range(n):
            logits = _logits(module(torch.tensor([seq])))[0, -1].double().cpu().numpy()
            t = int(np.argmax(logits))
            top2 = np.partition(logits, -2)[-2:]
            tokens.append(t)
            margins.append(float(top2[1] - top2[0]))
            seq.append(t)
    return Decode(tuple(tokens), tuple(margins))


def _logits(out):
    """The logits of a forward's output: a tensor, a transformers ModelOutput's `logits`, or a tuple's first."""
    if hasattr(out, "logits"):
        return out.logits
    if isinstance(out, (tuple, list)):
        return out[0]
    return out


def torch_generation_subject(target: str, inputs, seed: int, n: int, specs: Sequence, exporter: str = "auto"):
    """The `--torch` subject of the step that flips, the decode's lines among its warnings (said on the terminal)."""
    import torch

    from cp_debug.bisect.subjects.decoder_feed import IDS, DecoderInputs, seeded_ids
    from cp_debug.bisect.subjects.feeds import load_npz_inputs
    from cp_debug.bisect.subjects.generation import decode_answer
    from cp_debug.bisect.subjects.loaders import GivenModule, torch_subject
    from cp_debug.bisect.subjects.norm_cures import module_norms
    from cp_debug.graph.model import load_onnx

    cand_path = candidate_decoder_file(specs)
    cand_model = load_onnx(cand_path)
    dec = DecoderInputs.of(cand_model, cand_path)
    if dec is None:
        raise BadInputError(f"--generate: the candidate's {cand_path} has no input_ids input (no decoder LLM file)")
    module, example = causal_lm(target, seed)
    if inputs is not None:
        given = load_npz_inputs(inputs)
        if IDS not in given:
            raise BadInputError(f"--generate: {inputs} holds no {IDS} (the prompt's token ids)")
        ids = given[IDS]
    elif isinstance(example, dict) and IDS in example:
        ids = example[IDS].detach().cpu().numpy()
    else:
        ids = seeded_ids(dec, seed)
    ids = np.asarray(ids).reshape(1, -1).astype(np.int64)
    ref = torch_greedy(module, ids, n)
    answer = decode_answer(ref, cand_model, dec, cand_path, ids, n,
                           f"the reference's tokens (PyTorch, {type(module).__name__}) {list(ref.tokens)}",
                           reference_weights=lambda: [p.detach().float().cpu().numpy()
                                                      for p in module.state_dict().values() if p.ndim in (2, 3)],
                           norms=module_norms(module))
    subject = torch_subject(GivenModule(module, {IDS: torch.from_numpy(answer.prefix)}), exporter=exporter, seed=seed)
    subject.name = target
    return answer.told(subject)


def causal_lm(target: str, seed: int):
    """FUNC()'s (module, example), the module's cache off (a transformers model then returns the logits alone); a
    Hugging Face model's folder (config.json in it: what the builder was given) is read as the builder reads it,
    `AutoModelForCausalLM.from_pretrained(folder)`, with no example (the prompt from --inputs, else seeded ids)."""
    import torch

    from cp_debug.bisect.subjects.loaders import _call_user as call_user
    from cp_debug.bisect.subjects.loaders import user_function
    from cp_debug.determinism import seed_all

    seed_all(seed)
    if hf_folder(target):
        got = (_from_pretrained(Path(target)), None)
    else:
        fn = user_function(target, "--torch", seed=seed)
        seed_all(seed)
        got = call_user(fn, f"in {target.rpartition(':')[2]}()")
    if not (isinstance(got, tuple) and len(got) == 2 and isinstance(got[0], torch.nn.Module)):
        raise BadInputError(f"{target}() must return (module, example_inputs): a causal LM and its input_ids")
    module, example = got
    config = getattr(module, "config", None)
    if config is not None and hasattr(config, "use_cache"):
        config.use_cache = False
    module.eval()
    return module, example


def hf_folder(target: str) -> bool:
    """`target` is a Hugging Face model's folder (its config.json in it)."""
    return Path(target).is_dir() and (Path(target) / "config.json").is_file()


def _from_pretrained(folder: Path):
    try:
        from transformers import AutoModelForCausalLM
    except ImportError as err:
        raise BadInputError(f"--torch {folder}: a Hugging Face folder is read by transformers, which is not "
                            "installed (pip install transformers), or give FILE.py:FUNC") from err
    try:
        model = AutoModelForCausalLM.from_pretrained(folder).eval()
    except Exception as err:  # the folder's config or weights transformers cannot read: the user's input
        raise BadInputError(f"--torch {folder}: transformers cannot load it as a causal LM: "
                            f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}") from err
    return _eager_experts(model)


def _eager_experts(model):
    """A mixture of experts computed as transformers 5's "batched_mm" does (each token's chosen experts' weights
    gathered and multiplied, every expert's slot computed: no shape the routing decides), not by its default
    `grouped_mm` kernel, a custom op (`transformers.grouped_mm_fallback`, counted by `histc`) that neither ONNX
    exporter takes, nor by "eager", whose loop over the experts hit (`nonzero`) torch.export refuses (a
    data-dependent guard; LFM2-MoE's TorchScript export then fails on its mask's `diff`): the same arithmetic in
    another order (LFM2-MoE's and GPT-OSS's logits within 4e-6 of the default's, of ~20-30), so the step's forward
    can be exported and bisected.
    "eager" where "batched_mm" is not offered; a model without experts, or a transformers without the choice, as
    it is."""
    for implementation in ("batched_mm", "eager"):
        try:
            model.set_experts_implementation(implementation)
        except (AttributeError, ValueError):  # no such method (transformers 4), no experts, or not offered
            continue
        break
    return model


def candidate_decoder_file(specs: Sequence) -> Path:
    """The candidate's decoder file: `ort@DIR`'s `model.onnx` (the builder's name), else DIR's one .onnx file."""
    for spec in list(specs)[1:2]:
        folder = getattr(spec, "onnx_dir", None)
        if folder is None:
            break
        folder = Path(folder)
        if (folder / "model.onnx").is_file():
            return folder / "model.onnx"
        found = sorted(folder.glob("*.onnx"))
        if len(found) == 1:
            return found[0]
        raise BadInputError(f"--generate: {folder} holds no model.onnx (the builder's name) and "
                            f"{len(found)} other .onnx files: give the folder of one decoder file")
    raise BadInputError("--generate with --torch decodes a deployed decoder file: give the candidate as ort@DIR "
                        "(DIR: the builder's folder, model.onnx)")
