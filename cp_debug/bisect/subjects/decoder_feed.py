"""The inputs a decoder LLM file needs, made from its token ids: ONNX Runtime GenAI's model builder writes files
taking `input_ids`, `attention_mask`, `position_ids` (some) and a KV cache (`past_key_values.N.key` / `.value`,
[batch, kv_heads, past, head_dim]); a user has token ids, or nothing.

`decoder_feed(model, ids)` fills in the rest for a first forward (prefill): the mask all ones over the prompt, the
positions 0…S-1, the cache empty (past length 0). Without ids, `seeded_ids` draws a prompt from the vocabulary
(`genai_config.json` beside the file says its size, else the logits' last dimension). A file without `input_ids`
is no decoder here (None).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

import numpy as np

from cp_debug.errors import BadInputError

if TYPE_CHECKING:  # pragma: no cover
    import onnx

IDS = "input_ids"
_MADE = (IDS, "attention_mask", "position_ids")  # besides the cache, the inputs decoder_feed makes
_PAST = re.compile(r"^past_key_values\.(\d+)\.(key|value)$|^past_(key|value)_(\d+)$")
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

    @classmethod
    def of(cls, model: "onnx.ModelProto", path: str | Path | None = None) -> "DecoderInputs | None":
        import onnx

        from cp_debug.graph.model import static_dims

        inits = {i.name for i in model.graph.initializer}
        ins = [i for i in model.graph.input if i.name not in inits]
        names = tuple(i.name for i in ins)
        past = tuple(n for n in names if _PAST.match(n))
        if IDS not in names or any(n not in _MADE and n not in past for n in names):
            return None  # not a decoder's inputs (a BERT's token_type_ids): the file's inputs are matched as any file's
        dims = {i.name: static_dims(i.type) or () for i in ins}
        dtypes = {i.name: np.dtype(onnx.helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type)) for i in ins}
        cfg = _genai_config(path)
        head = cfg.get("decoder", {}).get("head_size")
        return cls(names, past, {n: dims[n] for n in past}, dtypes, _vocab(model, cfg),
                   int(head) if isinstance(head, int) else None)


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
            feed[name] = np.broadcast_to(np.arange(length), (batch, length)).astype(dec.dtypes[name])
        elif name in dec.past:
            feed[name] = np.zeros(_past_shape(name, dec.past_dims[name], batch, dec.head_size), dec.dtypes[name])
        elif name != IDS:
            raise BadInputError(f"the decoder file's input {name!r} is none cp_debug makes (input_ids, attention_mask, "
                                "position_ids, past_key_values.*): give it in --inputs FILE.npz")
    return feed


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
    return copy


_BUILDER_LAYER = re.compile(r"^model\.layers\.(\d+)(\.(attn|final_norm_layernorm))?(\..*)?$")


def builder_scope(name: str, layers: int) -> str | None:
    """ONNX Runtime GenAI's builder's scope (its node names, `/model/layers.0/attn/o_proj/MatMul`) as the HF
    model's module: `model.layers.N.attn` is `model.layers.N.self_attn`, the final norm it names
    `model.layers.L.final_norm_layernorm` (L: the number of layers) is `model.norm`, that `model.layers.L` no module
    (None); any other name unchanged."""
    m = _BUILDER_LAYER.match(name)
    if m is None:
        return name
    index, part, rest = int(m.group(1)), m.group(3), m.group(4) or ""
    if index == layers:
        return "model.norm" + rest if part == "final_norm_layernorm" else None
    return f"model.layers.{index}.self_attn{rest}" if part == "attn" else name


def builder_scopes(path: str | Path | None):
    """`builder_scope` for the file at `path` (its layer count from genai_config.json beside it); None: no such
    file (not the builder's)."""
    from functools import partial

    layers = (_genai_config(path).get("decoder") or {}).get("num_hidden_layers")
    return partial(builder_scope, layers=layers) if isinstance(layers, int) else None
