"""Does a deployed ONNX file hold the model's weights? The weight tensors of the file against the module's.

An exporter writes a layer's weight as it is (ConvTranspose, the head's last convs), transposed (a Linear as MatMul),
packed or split (nn.MultiheadAttention's in_proj_weight: one MatMul where query, key and value are one tensor, k and v
packed where only they are, q, k and v apart otherwise; an LLM's q_proj, k_proj and v_proj Linears as one qkv_proj:
ONNX Runtime GenAI's model builder; a gate and up projection stacked in one Linear as two MatMuls, Granite-4's
`input_linear`), or folded with the BatchNorm after it (TorchScript's eval
peephole: W·γ/√(σ²+ε) along the output channels, which is axis 1 for a ConvTranspose). Every such form is computed from
the module's parameters and buffers; a file tensor of two or more dimensions (at least 16 values) is *held* when one
form of the same shape equals it within the file's precision (FP16 files: float16 rounding), and *differs* when forms of
its shape exist but none equals it. Names are not used: a foreign exporter's names (dynamo, simplifiers) do not matter.

An FP16 converter changes weights silently: onnxconverter-common's `convert_float_to_float16` (polygraphy's
`--fp-to-fp16` runs it) clamps values beyond ±max_finite_val (1e4 by default) to it and raises nonzero ones below
min_positive_val (1e-7) to it, with a UserWarning no deployment log keeps; a plain cast overflows past 65504 to inf. A
float16 tensor that equals a form everywhere but where the form's value lies beyond one bound (and the file holds
the bound, same sign) *is* the form, clamped: counted as held, and the clamps said with their numbers (`Clamp`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_MIN_SIZE = 16


@dataclass(frozen=True)
class Clamp:
    """One weight the FP16 conversion clamped: the module's weight, the file's tensor, how many values went to
    ±`high_to` (the model's largest |w| `largest`) and how many nonzero ones were raised to ±`low_to` (its smallest
    nonzero |w| `smallest`)."""

    weight: str
    tensor: str
    high: int
    high_to: float
    largest: float
    low: int = 0
    low_to: float = 0.0
    smallest: float = 0.0

    def line(self) -> str:
        said = []
        if self.high:
            to = "overflowed to ±inf" if np.isinf(self.high_to) else f"clamped to ±{_num(self.high_to)}"
            said.append(f"{self.high} {_values(self.high)} {to} by the FP16 conversion (the model's largest "
                        f"{_num(self.largest)})")
        if self.low:
            said.append(f"{self.low} nonzero {_values(self.low)} raised to ±{_num(self.low_to)} (the model's smallest "
                        f"{_num(self.smallest)})")
        return f"{self.weight} (file tensor {self.tensor!r}): {'; '.join(said)}"


def _values(n: int) -> str:
    return "value" if n == 1 else "values"


@dataclass(frozen=True)
class WeightCheck:
    """One file against one module: how many weight tensors were compared, how many differ, and a few of them."""

    file: str
    compared: int
    differ: int
    examples: tuple[str, ...] = ()
    skipped: str = ""  # why nothing was compared (INT8 weights, no weights), else ""
    clamps: tuple[Clamp, ...] = ()  # weights the FP16 conversion clamped (held, not differing)

    def line(self) -> str:
        if self.skipped:
            return f"{self.file}: weights not compared ({self.skipped})"
        eg = f", e.g. {', '.join(self.examples)}" if self.examples else ""
        return f"{self.file}: {self.differ} of {self.compared} weights differ{eg}"


def _forms(module) -> dict[tuple[int, ...], list[tuple[str, np.ndarray]]]:
    """Every form the exporter may write each weight of `module` in, by shape, in module order, with the weight's
    name."""
    import torch

    mods = list(module.named_modules())
    out: dict[tuple[int, ...], list[tuple[str, np.ndarray]]] = {}

    def add(a: np.ndarray, name: str) -> None:
        out.setdefault(tuple(a.shape), []).append((name, a))

    for qual, m in mods:  # nn.MultiheadAttention's in_proj_weight [3E, E]: q, k, v packed, k and v packed, apart
        packed = getattr(m, "in_proj_weight", None)
        if isinstance(packed, torch.Tensor):
            parts = [packed, packed[packed.shape[0] // 3:], *packed.chunk(3, dim=0)]
        else:
            parts = [p for p in (getattr(m, f"{x}_proj_weight", None) for x in "qkv") if isinstance(p, torch.Tensor)]
        for part in parts:
            a = part.detach().double().cpu().numpy()
            add(a, f"{qual}.in_proj_weight")
            add(a.T, f"{qual}.in_proj_weight")
        linears = [getattr(getattr(m, f"{x}_proj", None), "weight", None) for x in "qkv"]
        if all(isinstance(w, torch.Tensor) and w.dim() == 2 for w in linears):  # an LLM's q, k, v Linears: the
            a = torch.cat(linears, dim=0).detach().double().cpu().numpy()  # builder's one qkv_proj MatMul
            add(a, f"{qual}.q_proj/k_proj/v_proj")
            add(a.T, f"{qual}.q_proj/k_proj/v_proj")
    for k, (qual, m) in enumerate(mods):
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
        if isinstance(m, torch.nn.Linear) and weight.shape[0] % 2 == 0:  # a gate|up stacked in one Linear
            forms.extend(np.split(weight, 2, axis=0))  # (Granite-4's input_linear): the builder's two MatMuls
        for f in forms:
            add(f, f"{qual or 'the model'}.weight")
            if f.ndim == 2:
                add(f.T, f"{qual or 'the model'}.weight")
    return out


def check_weights(module, model, file: str) -> WeightCheck:
    """The weight tensors of ONNX `model` (the file `file`) against the forms of `module`'s weights."""
    from onnx import TensorProto, numpy_helper

    inits = [i for i in model.graph.initializer if len(i.dims) >= 2 and int(np.prod(i.dims)) >= _MIN_SIZE]
    packed = _packed_weights(model)
    if packed:  # MatMulNBits packs its 4-bit weights into UINT8 bytes: not INT8 weights
        return WeightCheck(file, 0, 0, skipped=f"the file holds {packed}")
    if any(i.data_type in (TensorProto.INT8, TensorProto.UINT8) for i in inits):
        return WeightCheck(file, 0, 0, skipped="the file holds INT8 weights")
    floats = [i for i in inits if i.data_type in (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16)]
    if not floats:
        return WeightCheck(file, 0, 0, skipped="no weight tensors in the file")
    forms = _forms(module)
    compared, differ, examples, clamps = 0, 0, [], []
    for init in floats:
        candidates = forms.get(tuple(init.dims))
        if not candidates:
            continue
        a = numpy_helper.to_array(init).astype(np.float64)
        half = init.data_type != TensorProto.FLOAT
        compared += 1
        same = next((c for c in candidates if _same(a, c[1], half)), None)
        clamp = next(filter(None, (_clamped(a, c, init.name) for c in ([same] if same else candidates))),
                     None) if init.data_type == TensorProto.FLOAT16 else None
        if clamp is not None:
            clamps.append(clamp)
        elif same is None:
            differ += 1
            if len(examples) < 2:
                examples.append(f"{init.name} {list(init.dims)}")
    return WeightCheck(file, compared, differ, tuple(examples), clamps=tuple(clamps))


def _packed_weights(model) -> str:
    """The weight-only block formats the file's MatMulNBits hold ("4-bit MatMulNBits weights in blocks of 32"), or
    "" for a file without them."""
    from cp_debug.precision.nbits import nbits_nodes
    from cp_debug.precision.packed import _attrs

    attrs = [_attrs(n) for n in nbits_nodes(model)]
    if not attrs:
        return ""
    bits = "/".join(str(b) for b in sorted({int(a.get("bits", 4)) for a in attrs}))
    blocks = "/".join(str(b) for b in sorted({int(a.get("block_size", 0)) for a in attrs}))
    return f"{bits}-bit MatMulNBits weights in blocks of {blocks}"


def _clamped(a: np.ndarray, form: tuple[str, np.ndarray], tensor: str) -> Clamp | None:
    """`a` (a float16 tensor, as float64) as the form `form` clamped by an FP16 converter: equal to the form rounded
    to float16 everywhere but where the form lies beyond one high bound (the file holding that bound, or inf) or
    below one low bound (the file holding it), each with the form's sign; None otherwise (or where nothing was
    clamped)."""
    name, b = form
    with np.errstate(over="ignore", invalid="ignore"):
        r = b.astype(np.float16).astype(np.float64)
        changed = ~(np.abs(a - r) <= np.abs(r) * 2.0 ** -10 + 6e-8)
    if not changed.any():
        return None
    agree = np.sign(a) == np.sign(b)
    high = changed & agree & (np.abs(b) > np.abs(a))
    low = changed & agree & (np.abs(b) < np.abs(a)) & (b != 0)
    if np.count_nonzero(high | low) != np.count_nonzero(changed):
        return None
    bounds = [np.unique(np.abs(a[m])) for m in (high, low)]
    if any(len(x) > 1 for x in bounds):
        return None
    hi_to, lo_to = (float(x[0]) if len(x) else 0.0 for x in bounds)
    # a clamp takes every value past its bound: one beyond it left as it was (or a bound in FP16's plain range) is
    # no clamp but another weight (a random MobileNet's BN-folded conv differed at one value, read as "±0.031")
    if high.any() and (np.any(~high & (np.abs(b) > hi_to)) or hi_to < _CLAMP_HIGH):
        return None
    if low.any() and (np.any(~low & (b != 0) & (np.abs(b) < lo_to)) or lo_to > _CLAMP_LOW):
        return None
    nonzero = np.abs(b[b != 0])
    return Clamp(name, tensor, int(np.count_nonzero(high)), hi_to, float(np.abs(b).max()),
                 int(np.count_nonzero(low)), lo_to, float(nonzero.min()) if nonzero.size else 0.0)


# the bounds an FP16 converter clamps to lie beyond these (onnxconverter-common's defaults: 1e4 and 1e-7; a user's
# max_finite_val / min_positive_val may differ, never down into the range float16 holds plainly)
_CLAMP_HIGH, _CLAMP_LOW = 256.0, 1e-4


def exported_elsewhere(checks) -> bool:
    """Whether files were exported from other weights than the module's: most weights compared differ. A few
    differing is not that: an edited file, or a form `_forms` does not write."""
    compared = sum(c.compared for c in checks)
    return bool(compared) and sum(c.differ for c in checks) * 2 > compared


def _num(x: float) -> str:
    """3 significant digits, exponents as people write them: 1e4, 3.1e4, 1.19e-7."""
    return f"{x:.3g}".replace("e+0", "e").replace("e-0", "e-").replace("e+", "e")


def _same(a: np.ndarray, b: np.ndarray, half: bool) -> bool:
    scale = float(np.max(np.abs(b))) or 1.0
    tol = (2e-3 if half else 1e-4) * scale
    return bool(np.max(np.abs(a - b)) <= tol)
