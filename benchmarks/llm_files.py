"""A corpus of LLM files made by the real tools, with their right answers found without cp_debug (issue 116, item 6).

Run in a venv of its own (the tools' versions are recorded in the corpus's `versions.json`):

    python -m venv /tmp/genai-venv
    /tmp/genai-venv/bin/pip install onnxruntime-genai onnxruntime transformers torch onnx
    /tmp/genai-venv/bin/python benchmarks/llm_files.py OUT_DIR [--tokens 32]

Two tiny decoders from configs, random weights (`save_pretrained`, nothing downloaded):
- `llama`: a healthy Llama (hidden 64, 2 layers, vocab 256);
- `qwen3_massive`: a Qwen3 whose residual stream carries one massive channel (~1000x the rest, as trained LLMs
  do): the layers' norms give it no weight, the final norm hands it to lm_head at ~512 against ~0.25.

Each made into the files a 2026 deployment has: ONNX Runtime GenAI's model builder (`-p int4 -e cpu`, whose
MatMulNBits default to accuracy_level=4 on the CPU: INT8 activations per 32-value block; int4 at level 1; int4 with
`nodes_to_exclude=/lm_head/MatMul`; int8; fp32) and ORT's `MatMulNBitsQuantizer` (RTN INT4, block 32, levels 0 and 4)
on a plain `torch.onnx` export. The right answers: greedy decoding of N tokens by the PyTorch model and by each file
(ONNX Runtime, the builder's files with their KV cache), the first step whose token differs and the PyTorch logit
margin there; for a file that flips with MatMulNBits at level 4, each such node set to level 1 alone (the node
whose setting cures it) and set to 4 alone in a level-1 file (the node that alone flips it).
Writes OUT_DIR/answers.json and prints the scorecard.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np

PROMPT = [17, 101, 42, 7, 199, 64, 3, 250]
MASSIVE_CHANNEL = 5


def _tokenizer(folder: Path, vocab: int) -> None:
    """A word-level tokenizer of `vocab` tokens ("t0" … ), what the builder copies beside its files."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({f"t{i}": i for i in range(vocab)}, unk_token="t0"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="t0", eos_token="t1", bos_token="t2",
                                   pad_token="t0")
    fast.save_pretrained(folder)


ALPHA = 0.5


def _bigram(model, gen, alpha: float) -> None:
    """lm_head given a trained model's confidence: the row of token perm[v] leans towards token v's embedding, so
    the next token after v stands out (greedy margins of a few logits where random weights give tenths)."""
    import torch

    emb = model.model.embed_tokens.weight
    perm = torch.randperm(emb.shape[0], generator=gen)
    unit = emb / emb.norm(dim=1, keepdim=True).clamp_min(1e-6)
    w = model.lm_head.weight
    w.mul_(25.0)
    w[perm] += alpha * unit * w.shape[1] ** 0.5


def make_llama(folder: Path, seed: int = 0) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=256, max_position_embeddings=256, tie_word_embeddings=False,
                      bos_token_id=2, eos_token_id=1, pad_token_id=0)
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        _bigram(model, torch.Generator().manual_seed(seed), ALPHA)
    model.save_pretrained(folder)
    _tokenizer(folder, cfg.vocab_size)


def make_qwen3_massive(folder: Path, seed: int = 1, block_gain: float = 0.25) -> None:
    """A Qwen3 with a massive channel: embeddings ~0.25, channel MASSIVE_CHANNEL at 250; every layer norm weighs it
    0 (the layers see ~1), the final norm hands lm_head ~512 there and ~0.25 elsewhere (`block_gain` x that in the
    other channels of its 32-value block)."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(seed)
    cfg = Qwen3Config(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, head_dim=16, vocab_size=256, max_position_embeddings=256,
                      tie_word_embeddings=False, bos_token_id=2, eos_token_id=1, pad_token_id=0)
    model = Qwen3ForCausalLM(cfg).eval()
    c, h = MASSIVE_CHANNEL, cfg.hidden_size
    with torch.no_grad():
        emb = model.model.embed_tokens.weight
        emb.normal_(0.0, 0.25)
        emb[:, c] = 250.0
        rms = 250.0 / h ** 0.5  # the residual's rms, the massive channel's alone
        for layer in model.model.layers:
            for norm in (layer.input_layernorm, layer.post_attention_layernorm):
                norm.weight.fill_(rms * 4.0)  # the other channels at ~1
                norm.weight[c] = 0.0
        fin = model.model.norm.weight
        fin.fill_(rms)  # ~0.25 at lm_head's input
        lo = (c // 32) * 32
        fin[lo:lo + 32] *= block_gain
        fin[c] = 512.0 / h ** 0.5  # ~512
        emb_c = emb[:, c].clone()
        emb[:, c] = 0.0
        _bigram(model, torch.Generator().manual_seed(seed), ALPHA)
        emb[:, c] = emb_c
        model.lm_head.weight[:, c] = 0.0
    model.save_pretrained(folder)
    _tokenizer(folder, cfg.vocab_size)


# -- other architectures: the builder's other model types (issue 116: probes mapped, healthy within precision) -------
OTHER = {  # name -> (transformers config and model class names, the config's extra fields)
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", {}),  # attention biases
    # fused qkv / gate_up, gate_up's width not the vocabulary's (the builder takes a Linear of vocab outputs as lm_head)
    "phi3": ("Phi3Config", "Phi3ForCausalLM", {"original_max_position_embeddings": 256, "intermediate_size": 96}),
    # Phi-3.5-mini's LongRoPE: the builder's If between its short and long rotary caches (past 64 positions)
    "phi35": ("Phi3Config", "Phi3ForCausalLM", {
        "original_max_position_embeddings": 64, "intermediate_size": 96, "rope_parameters": {
            "rope_type": "longrope", "rope_theta": 10000.0, "original_max_position_embeddings": 64,
            "long_factor": [1.0 + 0.3 * i for i in range(8)], "short_factor": [1.0 + 0.05 * i for i in range(8)]}}),
    "gemma": ("GemmaConfig", "GemmaForCausalLM", {"head_dim": 16}),  # scaled embeddings, norms of (1 + w)
    "gemma2": ("Gemma2Config", "Gemma2ForCausalLM", {"head_dim": 16}),  # 4 norms a layer, sliding window, softcap
    "mistral": ("MistralConfig", "MistralForCausalLM", {"sliding_window": None}),
}
SMALL = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
         "num_key_value_heads": 2, "vocab_size": 256, "max_position_embeddings": 256, "tie_word_embeddings": False,
         "bos_token_id": 2, "eos_token_id": 1, "pad_token_id": 0}


def make_other(name: str, folder: Path, seed: int = 3, massive: bool = False) -> None:
    """A tiny model of another architecture the builder supports (`OTHER`), random weights (biases and Gemma's norm
    offsets drawn too, so that they matter), lm_head leaning towards a next-token permutation as the corpus's;
    `massive`: its residual stream carrying the massive channel as `make_qwen3_massive`'s (Llama-like norms:
    input_layernorm and post_attention_layernorm; a Gemma norm's weight is an offset from 1)."""
    import torch
    import transformers

    config_cls, model_cls, extra = OTHER[name]
    torch.manual_seed(seed)
    cfg = getattr(transformers, config_cls)(**(SMALL | extra))
    model = getattr(transformers, model_cls)(cfg).eval()
    offset = 1.0 if name.startswith("gemma") else 0.0  # Gemma's RMSNorm multiplies by (1 + w)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("bias"):
                p.normal_(0, 0.05)
            elif "norm" in n and offset:
                p.normal_(0, 0.1)
        if massive:
            _massive(model, offset)
        else:
            _bigram(model, torch.Generator().manual_seed(seed), ALPHA)
    model.save_pretrained(folder)
    _tokenizer(folder, cfg.vocab_size)
    if "rope_parameters" in extra:  # builder 0.18.0 reads the legacy key: config.rope_parameters["type"]
        path = Path(folder) / "config.json"
        saved = json.loads(path.read_text())
        saved["rope_parameters"]["type"] = saved["rope_parameters"]["rope_type"]
        path.write_text(json.dumps(saved, indent=2))


def tiny_model(config_cls: str, model_cls: str, extra: dict, seed: int):
    """A tiny transformers model from its config (`SMALL` | `extra`), random weights, its biases drawn too (so that
    they matter): `llm_inner.py`'s and `llm_hidden.py`'s."""
    import torch
    import transformers

    torch.manual_seed(seed)
    cfg = getattr(transformers, config_cls)(**(SMALL | extra))
    model = getattr(transformers, model_cls)(cfg).eval()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("bias"):
                p.normal_(0, 0.05)
    return model


def _massive(model, offset: float, block_gain: float = 0.25, final: float = 512.0, alpha: float = ALPHA) -> None:
    """`make_qwen3_massive`'s massive channel in any Llama-like model (norm weights less `offset`); `final`: what the
    final norm hands lm_head there (0: lm_head sees no massive channel, `llm_inner.py`); `alpha`: `_bigram`'s."""
    import torch

    c, h = MASSIVE_CHANNEL, model.config.hidden_size
    scale = h ** 0.5 if offset else 1.0  # Gemma multiplies its embeddings by √hidden
    emb = model.model.embed_tokens.weight
    emb.normal_(0.0, 0.25 / scale)
    rms = 250.0 / h ** 0.5
    for layer in model.model.layers:
        for norm in (layer.input_layernorm, layer.post_attention_layernorm):
            norm.weight.fill_(rms * 4.0 - offset)
            norm.weight[c] = -offset
    fin = model.model.norm.weight
    fin.fill_(rms)
    lo = (c // 32) * 32
    fin[lo:lo + 32] *= block_gain
    fin[c] = final / h ** 0.5
    fin -= offset
    _bigram(model, torch.Generator().manual_seed(1), alpha)
    emb[:, c] = 250.0 / scale
    model.lm_head.weight[:, c] = 0.0


def make_others(out: Path, n: int) -> dict:
    """Every `OTHER` model (and Qwen2 and Gemma with the massive channel) as the builder's FP32 and INT4 files and
    an RTN INT4 file (level 4) of its plain export, with the right answers as `make_corpus` finds them."""
    return make_models(out, n, {**{k: partial(make_other, k) for k in OTHER},
                                **{f"{k}_massive": partial(make_other, k, massive=True) for k in ("qwen2", "gemma")}})


def make_models(out: Path, n: int, makers: dict[str, Callable[[Path], None]]) -> dict:
    """Each model `makers` names by its tag — its HF folder OUT/TAG/hf made by `makers[tag](folder)` where not made
    already — as the builder's FP32 and INT4 files and an RTN INT4 file of its plain export (`four_files`), with its
    right answers (`_answers`); OUT/answers.json written after each model (the scripts of other model sets too)."""
    answers: dict = {"versions": versions(), "prompt": PROMPT, "tokens": n, "models": {}}
    for tag, make in makers.items():
        hf = out / tag / "hf"
        if not (hf / "config.json").is_file():
            make(hf)
        answers["models"][tag] = _answers(hf, four_files(hf, out / tag), n, out)
        _write_answers(out, answers)
    return answers


def models_main(doc: str, make: Callable[[Path, int, list[str]], dict], default, choices=None) -> None:
    """The command line of a script making a set of models (`make(OUT, tokens, names)`): OUT, --tokens, --models
    (`default` those made without it; `choices` the names it takes, None: any)."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--models", nargs="*", default=list(default), choices=list(choices) if choices else None)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    print(scorecard(make(args.out, args.tokens, args.models)))


def four_files(hf: Path, root: Path) -> dict[str, Path]:
    """`hf` as the builder's FP32 and INT4 files, an RTN INT4 file (level 4) of its plain export and that export, under
    `root` (the corpus's other, massive and inner models)."""
    plain = export_plain(hf, root / "plain" / "model.onnx")
    return {"fp32": build(hf, root / "fp32", "fp32"), "int4": build(hf, root / "int4", "int4"),
            "rtn_int4_level4": rtn_int4(plain, root / "rtn_int4_level4" / "model.onnx", 4), "plain_fp32": plain}


# -- the tools --------------------------------------------------------------------------------------------------
def build(hf: Path, out: Path, precision: str, extra: dict[str, str] | None = None) -> Path:
    """ONNX Runtime GenAI's model builder, as a user runs it (a folder built already is kept)."""
    if (out / "model.onnx").is_file():
        return out / "model.onnx"
    cmd = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(hf), "-o", str(out), "-p", precision,
           "-e", "cpu", "-c", str(out / "cache")]
    if extra:
        cmd += ["--extra_options", *(f"{k}={v}" for k, v in extra.items())]
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode:  # the builder refusing the model: its own last line said (its traceback's error)
        lines = [x for x in done.stderr.splitlines() if x.strip()]
        raise RuntimeError(f"the builder exits {done.returncode}: {lines[-1].strip() if lines else 'no message'}")
    _drop(out / "cache")
    return out / "model.onnx"


def _drop(folder: Path) -> None:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)


def export_plain(hf: Path, path: Path) -> Path:
    """A plain `torch.onnx` export of the model: input_ids -> logits, no cache (what a user exports by hand)."""
    if path.is_file():
        return path
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(hf).eval()
    model.config.use_cache = False

    class Logits(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids):
            return self.m(input_ids=input_ids, use_cache=False).logits

    path.parent.mkdir(parents=True, exist_ok=True)
    ids = torch.tensor([PROMPT])
    seq = torch.export.Dim("seq", min=2, max=128)
    prog = torch.onnx.export(Logits(model).eval(), (ids,), input_names=["input_ids"], output_names=["logits"],
                             dynamic_shapes=({1: seq},), opset_version=21, dynamo=True, external_data=False)
    prog.save(str(path), external_data=False)
    return path


def rtn_int4(plain: Path, path: Path, accuracy_level: int | None) -> Path:
    """ORT's MatMulNBitsQuantizer: RTN INT4, block 32, symmetric, at `accuracy_level`."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer, RTNWeightOnlyQuantConfig

    conf = RTNWeightOnlyQuantConfig()
    q = MatMulNBitsQuantizer(onnx.load(str(plain)), block_size=32, is_symmetric=True, accuracy_level=accuracy_level,
                             algo_config=conf)
    q.process()
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(q.model.model, str(path))
    return path


# -- the right answers -----------------------------------------------------------------------------------------
def torch_greedy(hf: Path, n: int) -> tuple[list[int], list[float]]:
    """Greedy tokens of the PyTorch model, and its top-1 minus top-2 logit margin at each step."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(hf).eval()
    ids = list(PROMPT)
    toks, margins = [], []
    with torch.no_grad():
        for _ in range(n):
            logits = model(input_ids=torch.tensor([ids]), use_cache=False).logits[0, -1].double().numpy()
            top = np.sort(logits)[-2:]
            t = int(np.argmax(logits))
            toks.append(t)
            margins.append(float(top[1] - top[0]))
            ids.append(t)
    return toks, margins


def ort_greedy(model, n: int, folder: Path | None = None) -> list[int]:
    """Greedy tokens of an ONNX file in ONNX Runtime: with its KV cache where it has one, else the whole prefix."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    src = model if isinstance(model, (str, Path)) else model.SerializeToString()
    sess = ort.InferenceSession(str(src) if isinstance(src, Path) else src, so, providers=["CPUExecutionProvider"])
    ins = {i.name: i for i in sess.get_inputs()}
    outs = [o.name for o in sess.get_outputs()]
    past = [k for k in ins if k.startswith("past_key_values")]
    ids = list(PROMPT)
    toks: list[int] = []
    where = folder or Path(model).parent
    cache = {k: np.zeros((1, ins[k].shape[1], _window(ins[k].shape[2], where), _head_size(ins[k].shape[3], where)),
                         np.float32) for k in past}
    # a hybrid's recurrent states (LFM2's `past.0.conv`, a Mamba layer's conv and SSM states): fixed shapes, zeros
    states = [k for k in ins if k.startswith("past.")]
    cache.update({k: np.zeros([1, *ins[k].shape[1:]], np.float32) for k in states})
    step_ids = list(PROMPT)
    for _ in range(n):
        if past:
            feed = {"input_ids": np.array([step_ids], np.int64)}
            if "attention_mask" in ins:
                feed["attention_mask"] = np.ones((1, len(ids)), np.int64)
            if "position_ids" in ins:
                pos = np.arange(len(ids) - len(step_ids), len(ids), dtype=np.int64)[None]
                # multimodal rotary (Qwen3.5's [3, batch, seq]): text positions, the same in its three sections
                feed["position_ids"] = np.repeat(pos[None], 3, 0) if len(ins["position_ids"].shape) == 3 else pos
            feed.update(cache)
        else:
            feed = {"input_ids": np.array([ids], np.int64)}
        res = dict(zip(outs, sess.run(outs, feed)))
        t = int(np.argmax(res["logits"][0, -1]))
        toks.append(t)
        ids.append(t)
        step_ids = [t]
        cache = {k: res[k.replace("past_key_values", "present")] for k in past}
        cache.update({k: res["present" + k[len("past"):]] for k in states})
    return toks


def _window(dim, folder: Path) -> int:
    """A cache input's capacity at the prefill: 0, or a sliding-window layer's window (Gemma 2's `past_sliding_length`:
    ONNX Runtime's GroupQueryAttention wants the window's capacity there, as GenAI allocates it)."""
    if dim != "past_sliding_length":
        return 0
    cfg = json.loads((folder / "genai_config.json").read_text())
    return int(cfg["model"]["decoder"]["sliding_window"]["window_size"])


def _head_size(dim, folder: Path) -> int:
    """The cache's last dimension: the file's where fixed, else genai_config.json's `head_size` beside it."""
    if isinstance(dim, int):
        return dim
    cfg = json.loads((folder / "genai_config.json").read_text())
    return int(cfg["model"]["decoder"]["head_size"])


def first_flip(a: list[int], b: list[int]) -> int | None:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None)


def level4_nodes(model) -> list[str]:
    return [n.name for n in model.graph.node if n.op_type == "MatMulNBits"
            and any(a.name == "accuracy_level" and a.i == 4 for a in n.attribute)]


def with_levels(model, levels: dict[str, int]):
    """A copy of `model` with the named MatMulNBits nodes' accuracy_level set."""
    import copy

    m = copy.deepcopy(model)
    for node in m.graph.node:
        if node.name in levels:
            for a in node.attribute:
                if a.name == "accuracy_level":
                    a.i = levels[node.name]
    return m


def node_answers(path: Path, ref: list[int], n: int) -> dict:
    """Each level-4 MatMulNBits node set to 1 alone (does the decode come back?), and set to 4 alone with every
    other node at 1 (does it alone flip?)."""
    import onnx

    model = onnx.load(str(path))
    nodes = level4_nodes(model)
    cures, flips = [], []
    for name in nodes:
        if first_flip(ort_greedy(with_levels(model, {name: 1}), n, path.parent), ref) is None:
            cures.append(name)
        alone = with_levels(model, {k: 1 for k in nodes if k != name})
        if first_flip(ort_greedy(alone, n, path.parent), ref) is not None:
            flips.append(name)
    return {"level4_nodes": len(nodes), "cured_by_level1_at": cures, "flips_alone_at_level4": flips}


def versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version(), "machine": platform.machine(), "processor": _cpu()}
    for pkg in ("onnxruntime-genai", "onnxruntime", "onnx", "torch", "transformers", "numpy"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def make_corpus(out: Path, n: int) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    answers: dict = {"versions": versions(), "prompt": PROMPT, "tokens": n, "models": {}}
    for name, maker in (("llama", make_llama), ("qwen3_massive", make_qwen3_massive)):
        hf = out / name / "hf"
        if not (hf / "config.json").is_file():
            maker(hf)
        files = {
            "int4": build(hf, out / name / "int4", "int4"),
            "int4_level1": build(hf, out / name / "int4_level1", "int4", {"accuracy_level": "1"}),
            "int4_lm_head_excluded": build(hf, out / name / "int4_lm_head_excluded", "int4",
                                           {"nodes_to_exclude": "/lm_head/MatMul"}),
            "int8": build(hf, out / name / "int8", "int8"),
            "fp32": build(hf, out / name / "fp32", "fp32"),
        }
        plain = export_plain(hf, out / name / "plain" / "model.onnx")
        files["plain_fp32"] = plain
        files["rtn_int4"] = rtn_int4(plain, out / name / "rtn_int4" / "model.onnx", None)
        files["rtn_int4_level4"] = rtn_int4(plain, out / name / "rtn_int4_level4" / "model.onnx", 4)
        answers["models"][name] = _answers(hf, files, n, out)
    _write_answers(out, answers)
    return answers


def _answers(hf: Path, files: dict, n: int, out: Path) -> dict:
    """The torch model's greedy tokens, and each file's: its first flipped step and, where one flips, the nodes."""
    ref, margins = torch_greedy(hf, n)
    entry: dict = {"torch_tokens": ref, "files": {}}
    for kind, path in files.items():
        toks = ort_greedy(path, n)
        step = first_flip(toks, ref)
        rec = {"path": str(path.relative_to(out)), "tokens": toks, "first_flip": step}
        if step is not None:
            rec.update(torch_token=ref[step], file_token=toks[step], torch_margin=margins[step])
            rec.update(node_answers(path, ref, n))
        entry["files"][kind] = rec
    return entry


def _write_answers(out: Path, answers: dict) -> None:
    tmp = out / "answers.json.tmp"
    tmp.write_text(json.dumps(answers, indent=1))
    os.replace(tmp, out / "answers.json")


def scorecard(answers: dict) -> str:
    lines = [f"versions: {json.dumps(answers['versions'])}", ""]
    lines.append(f"{'model':15} {'file':24} {'first flip':>10} {'torch→file':>12} {'margin':>8}  nodes")
    for model, entry in answers["models"].items():
        for kind, rec in entry["files"].items():
            step = rec["first_flip"]
            if step is None:
                lines.append(f"{model:15} {kind:24} {'none':>10}")
                continue
            swap = f"{rec['torch_token']}→{rec['file_token']}"
            nodes = (f"level-4 nodes {rec['level4_nodes']}; cured by level 1 at {rec['cured_by_level1_at']}; "
                     f"flips alone {rec['flips_alone_at_level4']}")
            lines.append(f"{model:15} {kind:24} {step:>10} {swap:>12} {rec['torch_margin']:8.3f}  {nodes}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--others", action="store_true", help="the other architectures (OTHER) instead of the corpus")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    print(scorecard((make_others if args.others else make_corpus)(args.out, args.tokens)))


if __name__ == "__main__":
    main()
