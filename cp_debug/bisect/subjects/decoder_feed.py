"""The inputs a decoder LLM file needs, made from its token ids: ONNX Runtime GenAI's model builder writes files
taking `input_ids`, `attention_mask`, `position_ids` (some) and a KV cache (`past_key_values.N.key` / `.value`,
[batch, kv_heads, past, head_dim]); a user has token ids, or nothing.

`decoder_feed(model, ids)` fills in the rest for a first forward (prefill): the mask all ones over the prompt, the
positions 0…S-1, the cache empty (past length 0; a sliding-window layer's cache of the window's capacity, zeros,
as GenAI allocates it: Gemma 2's). Without ids, `seeded_ids` draws a prompt from the vocabulary
(`genai_config.json` beside the file says its size, else the logits' last dimension). A file without `input_ids`
is no decoder here (None).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

import numpy as np

from cp_debug.errors import BadInputError

if TYPE_CHECKING:  # pragma: no cover
    import onnx

IDS = "input_ids"
_MADE = (IDS, "attention_mask", "position_ids")  # besides the cache, the inputs decoder_feed makes
_PAST = re.compile(r"^past_key_values\.(\d+)\.(key|value)$|^past_(key|value)_(\d+)$")
# a hybrid layer's recurrent state (LFM2's short convolution: the builder's `past.N.conv`, [batch, hidden, L-1]):
# every dim fixed but the batch, zeros at the prefill, then the step's `present.N.…` as a KV cache is
_STATE = re.compile(r"^past\.(\d+)\.(?!key$|value$)\w+$")
PROMPT_LENGTH = 8


@dataclass(frozen=True)
class DecoderInputs:
    """A decoder file's inputs by role: the cache inputs in order, their dims (kv heads, head dim), the vocabulary."""

    names: tuple[str, ...]
    past: tuple[str, ...]
    past_dims: Mapping[str, tuple]
    dtypes: Mapping[str, np.dtype]
    vocab: int | None
    head_size: int | None = None  # genai_config.json's, where the file leaves the cache's last dimension open
    # the cache inputs of sliding-window layers (Gemma 2's local attention) and their window: ONNX Runtime's
    # GroupQueryAttention with a local_window_size wants a cache of that capacity ("KV cache capacity (0) must be at
    # least local_window_size"), as GenAI allocates it; the past lengths then come from the mask
    sliding: Mapping[str, int] = field(default_factory=dict)
    # position_ids' rank: 2 ([batch, seq]), or 3 for a multimodal rotary's ([3, batch, seq]: Qwen3.5, Qwen2.5-VL's
    # text decoders, whose sections — time, height, width — a text prompt gives the same positions)
    position_rank: int = 2

    @classmethod
    def of(cls, model: "onnx.ModelProto", path: str | Path | None = None) -> "DecoderInputs | None":
        import onnx

        from cp_debug.graph.model import static_dims

        inits = {i.name for i in model.graph.initializer}
        ins = [i for i in model.graph.input if i.name not in inits]
        names = tuple(i.name for i in ins)
        dims = {i.name: static_dims(i.type) or () for i in ins}
        past = tuple(n for n in names if _PAST.match(n) or _is_state(n, dims[n]))
        if IDS not in names or any(n not in _MADE and n not in past for n in names):
            return None  # not a decoder's inputs (a BERT's token_type_ids): the file's inputs are matched as any file's
        dtypes = {i.name: np.dtype(onnx.helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type)) for i in ins}
        cfg = _genai_config(path)
        head = cfg.get("decoder", {}).get("head_size")
        return cls(names, past, {n: dims[n] for n in past}, dtypes, _vocab(model, cfg),
                   int(head) if isinstance(head, int) else None, _sliding(ins, past, cfg),
                   len(dims.get("position_ids", ())) or 2)


def _sliding(ins, past: tuple[str, ...], cfg: dict) -> dict[str, int]:
    """The cache inputs of the sliding-window layers → the window: genai_config.json's `sliding_window` (its
    `window_size` and `layers`), else the inputs whose past dimension the builder names `past_sliding_length`."""
    window = (cfg.get("decoder", {}).get("sliding_window") or {})
    size = window.get("window_size") if isinstance(window, dict) else None
    if not isinstance(size, int) or size <= 0:
        return {}
    layers = window.get("layers")
    named = {i.name for i in ins if len(i.type.tensor_type.shape.dim) > 2
             and i.type.tensor_type.shape.dim[2].dim_param == "past_sliding_length"}
    out = {}
    for name in past:
        m = _PAST.match(name)
        if m is None:  # a recurrent state: no window
            continue
        index = int(m.group(1) if m.group(1) is not None else m.group(4))
        if name in named or (isinstance(layers, list) and index in layers):
            out[name] = size
    return out


def _genai_config(path: str | Path | None) -> dict:
    """The `model` section of ONNX Runtime GenAI's genai_config.json beside the file; {} where there is none."""
    if path is None:
        return {}
    cfg = Path(path).parent / "genai_config.json"
    try:
        model = json.loads(cfg.read_text()).get("model", {}) if cfg.is_file() else {}
    except (OSError, ValueError, AttributeError):
        return {}
    return model if isinstance(model, dict) else {}


def _vocab(model: "onnx.ModelProto", cfg: dict) -> int | None:
    """The vocabulary size: genai_config.json's beside the file, else the logits' last dimension where fixed."""
    if isinstance(cfg.get("vocab_size"), int):
        return cfg["vocab_size"]
    from cp_debug.graph.model import static_dims

    for out in model.graph.output:
        dims = static_dims(out.type) or ()
        if out.name == "logits" and dims and isinstance(dims[-1], int) and dims[-1] > 0:
            return dims[-1]
    return None


def seeded_ids(dec: DecoderInputs, seed: int, length: int = PROMPT_LENGTH) -> np.ndarray:
    """A prompt of `length` token ids drawn with `seed` from the vocabulary, [1, length]."""
    if dec.vocab is None:
        raise BadInputError("the decoder file does not say its vocabulary size (no genai_config.json beside it, no "
                            "fixed logits dimension): give the prompt's token ids as --inputs FILE.npz (input_ids)")
    return np.random.default_rng(seed).integers(0, dec.vocab, size=(1, length)).astype(dec.dtypes[IDS])


def decoder_feed(dec: DecoderInputs, given: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The prefill feed: `given` (input_ids at least, any other input as given) completed with the mask, the
    positions and an empty cache."""
    if IDS not in given:
        raise BadInputError(f"a decoder's inputs need {IDS} (the prompt's token ids); got {', '.join(given)}")
    ids = np.asarray(given[IDS])
    if ids.ndim == 1:
        ids = ids[None]
    batch, length = ids.shape
    feed = {IDS: ids.astype(dec.dtypes[IDS])}
    for name in dec.names:
        if name in given and name != IDS:
            feed[name] = np.asarray(given[name]).astype(dec.dtypes[name])
        elif name == "attention_mask":
            feed[name] = np.ones((batch, length), dec.dtypes[name])
        elif name == "position_ids":
            feed[name] = positions(dec, 0, length, batch)
        elif name in dec.past and _STATE.match(name):
            feed[name] = np.zeros((batch, *dec.past_dims[name][1:]), dec.dtypes[name])
        elif name in dec.past:
            shape = _past_shape(name, dec.past_dims[name], batch, dec.head_size)
            feed[name] = np.zeros((*shape[:2], dec.sliding.get(name, 0), shape[3]), dec.dtypes[name])
        elif name != IDS:
            raise BadInputError(f"the decoder file's input {name!r} is none cp_debug makes (input_ids, attention_mask, "
                                "position_ids, past_key_values.*): give it in --inputs FILE.npz")
    return feed


def positions(dec: DecoderInputs, start: int, stop: int, batch: int = 1) -> np.ndarray:
    """The position ids of tokens start…stop-1 in the file's layout: [batch, S], or [3, batch, S] (a multimodal
    rotary's sections, each the text's positions)."""
    pos = np.broadcast_to(np.arange(start, stop), (batch, stop - start))
    if dec.position_rank == 3:
        pos = np.broadcast_to(pos, (3, batch, stop - start))
    return np.ascontiguousarray(pos).astype(dec.dtypes.get("position_ids", np.dtype(np.int64)))


def without_sliding_presents(model: "onnx.ModelProto", dec: DecoderInputs) -> tuple["onnx.ModelProto", list[str]]:
    """`model` without the cache outputs of its sliding-window layers (a copy; the model itself where it has none),
    and a line saying so: their buffer holds the window's capacity, of which a prefill writes its own tokens only;
    the rest is memory ONNX Runtime leaves unwritten (two runs of one file differ there)."""
    import onnx

    cut = {present_of(n) for n in dec.sliding}
    if not cut & {o.name for o in model.graph.output}:
        return model, []
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    kept = [o for o in copy.graph.output if o.name not in cut]
    del copy.graph.output[:]
    copy.graph.output.extend(kept)
    shown = sorted(cut)
    return copy, [f"{', '.join(shown[:2])}{' …' if len(shown) > 2 else ''}: the cache of a sliding-window layer "
                  f"(capacity {max(dec.sliding.values())}, of which the prefill writes its tokens only, the rest "
                  "unwritten memory) left out of the comparison"]


def present_of(past: str) -> str:
    """The cache output a cache input is fed from (`past_key_values.0.key` → `present.0.key`)."""
    if past.startswith("past."):  # a recurrent state: `past.0.conv` → `present.0.conv`
        return "present" + past[len("past"):]
    return past.replace("past_key_values", "present") if past.startswith("past_key_values") else \
        past.replace("past_", "present_")


def _is_state(name: str, dims: tuple) -> bool:
    """A recurrent state input (`_STATE`): its dims past the batch all fixed."""
    return bool(_STATE.match(name)) and len(dims) >= 2 and all(isinstance(d, int) and d > 0 for d in dims[1:])


def _past_shape(name: str, dims: tuple, batch: int, head_size: int | None) -> tuple[int, ...]:
    """An empty cache entry: [batch, kv_heads, 0, head_dim] from the input's fixed dims (the head size from
    genai_config.json where the file leaves it open, as the builder's `kv_cache_dim`)."""
    if len(dims) == 4 and not isinstance(dims[3], int) and head_size:
        dims = (*dims[:3], head_size)
    if len(dims) != 4 or not all(isinstance(d, int) and d > 0 for d in (dims[1], dims[3])):
        raise BadInputError(f"cache input {name!r} has dims {list(dims)}: cp_debug makes [batch, kv_heads, past, "
                            "head_dim] with kv_heads and head_dim fixed; give it in --inputs FILE.npz")
    return (batch, dims[1], 0, dims[3])


def prefilled(model: "onnx.ModelProto", dec: DecoderInputs, length: int, keep_inputs, keep_outputs):
    """A copy of the decoder file `model` fixed to one prefill of `length` tokens (batch 1), for a model whose only
    inputs are `keep_inputs` (a `--torch` causal LM's export: input_ids → logits): the inputs cp_debug makes (the
    mask, the positions, the empty cache, as `decoder_feed` feeds them) held as constants, input_ids [1, length], and
    of the outputs only `keep_outputs` (the cache's `present.*` left inside). None: nothing to hold (the file takes
    no more than `keep_inputs`)."""
    import onnx
    from onnx import numpy_helper

    made = {k: v for k, v in decoder_feed(dec, {IDS: np.zeros((1, length), dec.dtypes[IDS])}).items()
            if k not in set(keep_inputs)}
    if not made:
        return None
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    graph = copy.graph
    kept = [i for i in graph.input if i.name not in made]
    del graph.input[:]
    graph.input.extend(kept)
    graph.initializer.extend(numpy_helper.from_array(np.ascontiguousarray(v), k) for k, v in made.items())
    for vi in graph.input:
        if vi.name == IDS:
            del vi.type.tensor_type.shape.dim[:]
            for d in (1, length):
                vi.type.tensor_type.shape.dim.add().dim_value = d
    outs = [o for o in graph.output if o.name in set(keep_outputs)]
    if outs:
        del graph.output[:]
        graph.output.extend(outs)
    _last_residual_sum(graph, length)
    return copy


def _last_residual_sum(graph, length: int) -> None:
    """The last decoder layer's output, written: the builder's final norm (a SkipSimplifiedLayerNormalization adding
    the last MLP's output to the residual) leaves its residual sum (output 3) unwritten, the only tensor holding that
    layer's output; named here (`…/final_norm_layernorm/output_3`) and made a graph output, as every other layer's
    norm writes it (`probes/naming._residual_sums` reads it as the layer's). The file computes the same."""
    import onnx

    norms = [n for n in graph.node if n.op_type in ("SkipSimplifiedLayerNormalization", "SkipLayerNormalization")]
    if not norms or (len(norms[-1].output) > 3 and norms[-1].output[3]):
        return
    node = norms[-1]
    name = node.output[0].rpartition("/")[0] + "/output_3" if "/" in node.output[0] else node.output[0] + "_sum"
    while len(node.output) < 4:
        node.output.append("")
    node.output[3] = name
    graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, [1, length, None]))


_BUILDER_LAYER = re.compile(r"^model\.layers\.(\d+)(\..*)?$")
# the builder's scope components (its own words, one for every model type) → the HF modules' names for them, the
# first that the model has taken; the first one where the model's names are not known
_SYNONYMS = {"attn": ("self_attn", "attn", "self_attention", "attention"),
             "act_fn": ("act_fn", "activation_fn", "act", "activation"),  # Granite-4's `shared_mlp.activation`
             "o_proj": ("o_proj", "dense", "out_proj"),  # Phi-2's attention output is `dense`
             "q_norm": ("q_norm", "query_layernorm", "q_layernorm"),  # HunYuan's, LFM2's
             "k_norm": ("k_norm", "key_layernorm", "k_layernorm"),
             "moe": ("mlp", "block_sparse_moe", "moe", "feed_forward"),  # a mixture of experts (GPT-OSS: `mlp`)
             # LFM2's words: its norms around the operator (a short convolution or attention) and the feed-forward
             "operator_layernorm": ("operator_norm", "operator_layernorm"),
             "ffn_layernorm": ("ffn_norm", "ffn_layernorm"),
             "mlp": ("mlp", "feed_forward", "shared_mlp"),  # LFM2's, Granite-4's `shared_mlp`
             "gate_proj": ("gate_proj", "w1"), "up_proj": ("up_proj", "w3"), "down_proj": ("down_proj", "w2")}
# model.<one of these>: the builder's final norm (LFM2's `embedding_norm`)
_FINAL_NORMS = ("norm", "final_layernorm", "final_norm", "ln_f", "embedding_norm")


def builder_scope(name: str, layers: int, names: "frozenset[str] | set[str] | None" = None) -> str | None:
    """ONNX Runtime GenAI's builder's scope (its node names, `/model/layers.0/attn/o_proj/MatMul`) as the HF
    model's module, `names` (the model's module names) deciding among the HF words for one part: `attn` is
    `self_attn`, `act_fn` `activation_fn` where the model says so (Phi-3), the final norm the builder names
    `model.layers.L.final_norm_layernorm` (L: the number of layers) `model.norm` (or `model.final_layernorm`…), that
    `model.layers.L` no module (None); any other name unchanged."""
    m = _BUILDER_LAYER.match(name)
    if m is None:
        return name
    index, parts = int(m.group(1)), (m.group(2) or "").split(".")[1:]
    if index == layers:
        if not parts or parts[0] != "final_norm_layernorm":
            return None
        return _first([f"model.{w}" + "".join("." + p for p in parts[1:]) for w in _FINAL_NORMS], names)
    options = [[f"model.layers.{index}"]]
    for part in parts:
        options = [[f"{o}.{w}" for o in options[0] for w in _SYNONYMS.get(part, (part,))]]
    return _first(options[0], names)


def _first(options: list[str], names) -> str:
    """The first of `options` among `names` (the first of all where `names` is not given or holds none)."""
    return next((o for o in options if names is not None and o in names), options[0])


def builder_scopes(path: str | Path | None, names: "frozenset[str] | set[str] | None" = None):
    """`builder_scope` for the file at `path` (its layer count from genai_config.json beside it), read against the
    model's module names `names`; None: no such file (not the builder's)."""
    from functools import partial

    layers = (_genai_config(path).get("decoder") or {}).get("num_hidden_layers")
    return partial(builder_scope, layers=layers, names=names) if isinstance(layers, int) else None
