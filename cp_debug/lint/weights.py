"""Does a deployed ONNX file hold the model's weights? The weight tensors of the file against the module's.

An exporter writes a layer's weight as it is (ConvTranspose, the head's last convs), transposed (a Linear as MatMul),
packed or split (nn.MultiheadAttention's in_proj_weight: one MatMul where query, key and value are one tensor, k and v
packed where only they are, q, k and v apart otherwise), or folded with the BatchNorm after it (TorchScript's eval
peephole: W·γ/√(σ²+ε) along the output channels, which is axis 1 for a ConvTranspose). Every such form is computed from
the module's parameters and buffers; a file tensor of two or more dimensions (at least 16 values) is *held* when one
form of the same shape equals it within the file's precision (FP16 files: float16 rounding), and *differs* when forms of
its shape exist but none equals it. Names are not used: a foreign exporter's names (dynamo, simplifiers) do not matter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_MIN_SIZE = 16


@dataclass(frozen=True)
class WeightCheck:
    """One file against one module: how many weight tensors were compared, how many differ, and a few of them."""

    file: str
    compared: int
    differ: int
    examples: tuple[str, ...] = ()
    skipped: str = ""  # why nothing was compared (INT8 weights, no weights), else ""

    def line(self) -> str:
        if self.skipped:
            return f"{self.file}: weights not compared ({self.skipped})"
        eg = f", e.g. {', '.join(self.examples)}" if self.examples else ""
        return f"{self.file}: {self.differ} of {self.compared} weights differ{eg}"


def _forms(module) -> dict[tuple[int, ...], list[np.ndarray]]:
    """Every form the exporter may write each weight of `module` in, by shape, in module order."""
    import torch

    mods = list(module.named_modules())
    out: dict[tuple[int, ...], list[np.ndarray]] = {}

    def add(a: np.ndarray) -> None:
        out.setdefault(tuple(a.shape), []).append(a)

    for _, m in mods:  # nn.MultiheadAttention's in_proj_weight [3E, E]: q, k, v packed, k and v packed, apart
        packed = getattr(m, "in_proj_weight", None)
        if isinstance(packed, torch.Tensor):
            parts = [packed, packed[packed.shape[0] // 3:], *packed.chunk(3, dim=0)]
        else:
            parts = [p for p in (getattr(m, f"{x}_proj_weight", None) for x in "qkv") if isinstance(p, torch.Tensor)]
        for part in parts:
            a = part.detach().double().cpu().numpy()
            add(a)
            add(a.T)
    for k, (_, m) in enumerate(mods):
        w = getattr(m, "weight", None)
        if not isinstance(w, torch.Tensor) or w.dim() < 2 or isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            continue
        weight = w.detach().double().cpu().numpy()
        forms = [weight]
        axis = 1 if isinstance(m, torch.nn.modules.conv._ConvTransposeNd) else 0
        nxt = mods[k + 1][1] if k + 1 < len(mods) else None
        if isinstance(nxt, torch.nn.modules.batchnorm._BatchNorm) and nxt.running_var is not None \
                and nxt.num_features == weight.shape[axis]:
            scale = (nxt.weight.detach().double() if nxt.weight is not None else torch.ones(nxt.num_features,
                                                                                           dtype=torch.float64))
            scale = (scale / torch.sqrt(nxt.running_var.detach().double() + nxt.eps)).cpu().numpy()
            shape = [1] * weight.ndim
            shape[axis] = -1
            forms.append(weight * scale.reshape(shape))
        for f in forms:
            add(f)
            if f.ndim == 2:
                add(f.T)
    return out


def check_weights(module, model, file: str) -> WeightCheck:
    """The weight tensors of ONNX `model` (the file `file`) against the forms of `module`'s weights."""
    from onnx import TensorProto, numpy_helper

    inits = [i for i in model.graph.initializer if len(i.dims) >= 2 and int(np.prod(i.dims)) >= _MIN_SIZE]
    if any(i.data_type in (TensorProto.INT8, TensorProto.UINT8) for i in inits):
        return WeightCheck(file, 0, 0, skipped="the file holds INT8 weights")
    floats = [i for i in inits if i.data_type in (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16)]
    if not floats:
        return WeightCheck(file, 0, 0, skipped="no weight tensors in the file")
    forms = _forms(module)
    compared, differ, examples = 0, 0, []
    for init in floats:
        candidates = forms.get(tuple(init.dims))
        if not candidates:
            continue
        a = numpy_helper.to_array(init).astype(np.float64)
        half = init.data_type != TensorProto.FLOAT
        compared += 1
        if not any(_same(a, c, half) for c in candidates):
            differ += 1
            if len(examples) < 2:
                examples.append(f"{init.name} {list(init.dims)}")
    return WeightCheck(file, compared, differ, tuple(examples))


def exported_elsewhere(checks) -> bool:
    """Whether files were exported from other weights than the module's: most weights compared differ. A few
    differing is not that: an edited file, or a form `_forms` does not write."""
    compared = sum(c.compared for c in checks)
    return bool(compared) and sum(c.differ for c in checks) * 2 > compared


def _same(a: np.ndarray, b: np.ndarray, half: bool) -> bool:
    scale = float(np.max(np.abs(b))) or 1.0
    tol = (2e-3 if half else 1e-4) * scale
    return bool(np.max(np.abs(a - b)) <= tol)
