"""PTQ checkpoints in the AWML / pytorch-quantization layout, and the fake-quant model built from one.

A checkpoint is mmengine's `{"state_dict": ..., "meta": ...}`: the BN-fused weights (convs with a bias, BNs
gone) plus `<conv>._input_quantizer._amax` (one value) and `<conv>._weight_quantizer._amax` (one value, or one
per output channel: [C,1,1,1] for Conv2d, [1,C,1,1] for ConvTranspose2d) for each quantized conv. Tensors are
read onto the CPU whatever device they were saved from (map_location), multi-element amax is kept whole, and
a checkpoint that does not fit names the module and both shapes in one line.

Generic: the layout, a checked state dict read into a `PtqState` (`quantizer_state`), the fake quantizers set from
one on a model of the fused structure (`insert_amax`), a PTQ dir (`read_ptq_dir(DIR, graph_files)`: the checkpoint,
the deployment's Q/DQ ONNX files `cpdebug quantize` wrote, quantization.json). A recipe checks a checkpoint against
its own fused structure and builds its fake-quant model (CenterPoint's: `recipes/centerpoint/ptq_checkpoint.py`).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from cp_debug.errors import CheckpointError
from cp_debug.files import umask

CHECKPOINT_FILE = "ptq.pth"
REPORT_FILE = "quantization.json"
INPUT_SUFFIX = "._input_quantizer._amax"
WEIGHT_SUFFIX = "._weight_quantizer._amax"


@dataclass(frozen=True)
class LayerAmax:
    """One quantized layer's amax: `input` (shape []), `weight` ([] or the per-channel shape), on the CPU."""

    layer: str
    kind: str
    input: Any = None  # torch.Tensor | None
    weight: Any = None
    weight_axis: int | None = None  # None: per-tensor weights

    @property
    def per_channel(self) -> bool:
        return self.weight_axis is not None


@dataclass(frozen=True)
class PtqState:
    """What a PTQ checkpoint holds, checked against a preset's fused structure (`weights` exclude amax)."""

    preset: str
    source: str
    weights: "OrderedDict[str, Any]"
    amax: dict[str, LayerAmax]
    meta: dict = field(default_factory=dict)

    @property
    def layers(self) -> tuple[str, ...]:
        return tuple(self.amax)


def cpu_tensor(key: str, value, source: str):
    """A checkpoint's tensor `key` on the CPU; one on the 'meta' device (no values) is one line."""
    if value.device.type == "meta":
        raise CheckpointError(f"{source}: {key} is on the 'meta' device and holds no values; save the "
                              "checkpoint from a model with real (CPU or CUDA) amax tensors")
    return value.detach().to("cpu")


def _layer_amax(layer: str, conv, inp, w, source: str) -> LayerAmax:
    import torch

    from cp_debug.quant.quantizers import out_channels, weight_axis

    kind = type(conv).__name__
    kind = kind[len("Quant"):] if kind.startswith("Quant") else kind
    if inp is not None and inp.numel() != 1:
        raise CheckpointError(f"{source}: {layer}{INPUT_SUFFIX} has shape {list(inp.shape)} ({inp.numel()} values) "
                              f"but {layer} ({kind}) quantizes its input per tensor: need 1 value")
    axis = None
    if w is not None:
        c, ax = out_channels(conv), weight_axis(conv)
        if w.numel() == c and c > 1:
            axis = ax
            shape = [1] * conv.weight.dim()
            shape[ax] = c
            w = w.reshape(shape)
        elif w.numel() == 1:
            w = w.reshape(())
        else:
            raise CheckpointError(
                f"{source}: {layer}{WEIGHT_SUFFIX} has shape {list(w.shape)} ({w.numel()} values) but {layer} is a "
                f"{kind} with weight {list(conv.weight.shape)}: need 1 value (per tensor) or {c} (per output "
                f"channel, axis {ax})")
    inp = None if inp is None else inp.reshape(()).to(torch.float32)
    return LayerAmax(layer, kind, inp, None if w is None else w.to(torch.float32), axis)


def quantizer_state(model, state: "OrderedDict[str, Any]", meta, preset: str, source: str,
                    is_quantizer_key) -> PtqState:
    """The PtqState of a state dict already checked against `model` (the BN-fused structure of `preset`, keys and
    shapes): each quantized module's amax read and checked, the weights without the quantizer entries
    (`is_quantizer_key(key)`)."""
    amax_keys = [k for k in state if is_quantizer_key(k)]
    odd = [k for k in amax_keys if not (k.endswith(INPUT_SUFFIX) or k.endswith(WEIGHT_SUFFIX))]
    if odd:
        raise CheckpointError(f"{source}: quantizer entries other than _input_quantizer._amax / "
                              f"_weight_quantizer._amax: {', '.join(odd[:5])}")
    modules = dict(model.named_modules())
    amax: dict[str, LayerAmax] = {}
    for name in modules:
        inp, w = state.get(name + INPUT_SUFFIX), state.get(name + WEIGHT_SUFFIX)
        if inp is not None or w is not None:
            amax[name] = _layer_amax(name, modules[name], inp, w, source)
    weights = OrderedDict((k, v) for k, v in state.items() if not is_quantizer_key(k))
    return PtqState(preset, source, weights, amax, dict(meta))


def insert_amax(model, state: PtqState):
    """`model` (the BN-fused structure `state` was checked against) with the checkpoint's weights and a fake
    quantizer (its amax) on each quantized conv, in eval mode, marked BN-fused."""
    from cp_debug.quant.quantizers import LayerPlan, QuantPlan, insert_quantizers

    model.load_state_dict(state.weights, strict=True)
    plan = QuantPlan(tuple(LayerPlan(a.layer, a.kind, a.weight_axis if a.weight is not None else 0)
                           for a in state.amax.values()), ())
    insert_quantizers(model, plan)
    for a in state.amax.values():
        m = model.get_submodule(a.layer)
        if a.input is None:
            m._input_quantizer.enabled = False
        else:
            m._input_quantizer.set_amax(a.input)
        if a.weight is None:
            m._weight_quantizer.enabled = False
        else:
            m._weight_quantizer.axis = a.weight_axis
            m._weight_quantizer.set_amax(a.weight)
    model.is_bn_fused = True
    return model.eval()


def save_ptq_checkpoint(model, path: str | Path, meta: Mapping[str, Any] | None = None) -> Path:
    """mmengine layout, amax on the CPU, written atomically (fused weights + `_amax` buffers)."""
    from cp_debug.pickles import save_checkpoint

    return save_checkpoint(model, path, meta=dict(meta or {}))


# -- a PTQ output directory ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PtqDir:
    """What `cpdebug quantize --out DIR` wrote."""

    root: Path
    checkpoint: Path
    graphs: tuple[Path, ...]  # the Q/DQ ONNX files, in the deployment's stage order
    preset: str
    info: dict


def read_ptq_dir(path: str | Path, graph_files: tuple[str, ...]) -> PtqDir:
    """The files of a PTQ directory, checked to exist (`graph_files`: the recipe's ONNX file names, in stage order,
    `Recipe.graph_files`); `info` is its quantization.json."""
    root = Path(path)
    graphs = [root / name for name in graph_files]
    files = [root / CHECKPOINT_FILE, *graphs, root / REPORT_FILE]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise CheckpointError(f"{root} is not a PTQ directory (missing {', '.join(missing)}); write one with "
                              "`cpdebug quantize --out DIR`")
    info = json.loads(files[-1].read_text())
    return PtqDir(root, files[0], tuple(graphs), str(info.get("preset", "")), info)


def write_dir_atomically(out: str | Path, write) -> Any:
    """Call `write(tmp_dir)` on a fresh sibling folder of `out`, then put it in place of `out` (an existing
    `out` is replaced only once everything was written); on any failure nothing of it is left."""
    import os
    import shutil
    import tempfile

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise CheckpointError(f"--out {out} is a file; give a directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    old = None
    try:
        result = write(tmp)
        mask = umask()
        os.chmod(tmp, 0o777 & ~mask)
        for f in tmp.iterdir():  # temp-file writers leave 0600: give the files the umask's usual mode
            os.chmod(f, 0o666 & ~mask)
        if out.exists():
            old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".old"))
            os.replace(out, old / out.name)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and (old / out.name).exists() and not out.exists():
            os.replace(old / out.name, out)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return result
