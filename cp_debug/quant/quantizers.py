"""TensorQuantizer-style fake quantization with the pytorch-quantization / ModelOpt state-dict layout.

A quantized conv keeps its own name and gains two children, so its keys are `<conv>.weight`, `<conv>.bias`,
`<conv>._input_quantizer._amax` (per tensor, shape []) and `<conv>._weight_quantizer._amax` (per output
channel: [C, 1, 1, 1] for Conv2d, [1, C, 1, 1] for ConvTranspose2d whose weight is [in, out, kH, kW]; or []
per tensor). Quantization is symmetric INT8: scale = amax / 127, zero point 0, values rounded half to even
and saturated to [-128, 127] - exactly ONNX QuantizeLinear/DequantizeLinear, so the torch fake-quant model
and the exported Q/DQ graph compute the same thing. An `_amax` buffer exists only once it is set, as in
pytorch-quantization: a layer left in FP32 has no quantizer keys at all.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterable, Iterator, Mapping

import numpy as np

import torch
from torch import nn
from torch.nn import functional as F

from cp_debug.errors import BadInputError

QMIN, QMAX = -128, 127
BOUND = 127.0  # scale = amax / BOUND
_TINY_AMAX = 1e-8  # a zero amax (a dead channel) would give scale 0, which Q/DQ forbids
CONVS = (nn.Conv2d, nn.ConvTranspose2d)


def weight_axis(conv: nn.Module) -> int:
    """The output-channel axis of a conv's weight: 0 for Conv2d, 1 for ConvTranspose2d ([in, out, kH, kW])."""
    return 1 if isinstance(conv, nn.ConvTranspose2d) else 0


def out_channels(conv: nn.Module) -> int:
    return int(conv.weight.shape[weight_axis(conv)])


def fake_quant(x: torch.Tensor, amax: torch.Tensor, axis: int | None) -> torch.Tensor:
    """Symmetric INT8 quantize-dequantize of `x` with `amax` (per tensor when axis is None or amax has 1 value)."""
    amax = amax.detach().to(device=x.device, dtype=torch.float32).clamp_min(_TINY_AMAX)
    if axis is None or amax.numel() == 1:
        scale = float(amax.reshape(())) / BOUND
        return torch.fake_quantize_per_tensor_affine(x, scale, 0, QMIN, QMAX)
    # Built from host values, so an ONNX export sees constants (TensorRT needs constant scales), not ops on amax.
    scale = torch.from_numpy(amax.cpu().numpy().reshape(-1) / np.float32(BOUND)).to(x.device)
    zero = torch.zeros(scale.numel(), dtype=torch.int32, device=x.device)
    return torch.fake_quantize_per_channel_affine(x, scale, zero, axis, QMIN, QMAX)


class TensorQuantizer(nn.Module):
    """Fake-quantizes what passes through with its `_amax`; collects statistics instead while a calibrator is
    attached (values pass unchanged); passes everything through when disabled."""

    cpdebug_trace_skip = True  # bisect's module trace sees the quantized conv as the layer, not its quantizers

    def __init__(self, axis: int | None = None):
        super().__init__()
        self.axis = axis
        self.enabled = True
        self.calibrator = None  # set by calibrate.py while collecting

    @property
    def amax(self) -> torch.Tensor | None:
        return getattr(self, "_amax", None)

    def set_amax(self, amax: torch.Tensor) -> None:
        amax = torch.as_tensor(amax).detach().to("cpu", torch.float32).clone()
        if "_amax" in self._buffers:
            self._amax = amax.to(self._amax.device)
        else:
            self.register_buffer("_amax", amax)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        key = prefix + "_amax"
        if key in state_dict and "_amax" not in self._buffers:
            self.register_buffer("_amax", torch.empty_like(state_dict[key], device="cpu"))
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.calibrator is not None:
            self.calibrator.collect(x)
            return x
        if not self.enabled:
            return x
        amax = self.amax
        if amax is None:
            raise BadInputError("a quantizer without amax ran: calibrate the model or load a PTQ checkpoint first")
        return fake_quant(x, amax, self.axis)

    def extra_repr(self) -> str:
        amax = self.amax
        shown = "none" if amax is None else (f"{float(amax):.4g}" if amax.numel() == 1 else f"{list(amax.shape)}")
        return f"axis={self.axis}, enabled={self.enabled}, amax={shown}"


class _QuantMixin:
    _input_quantizer: TensorQuantizer
    _weight_quantizer: TensorQuantizer

    def _init_quantizers(self, per_channel: bool) -> None:
        self._input_quantizer = TensorQuantizer(None)
        self._weight_quantizer = TensorQuantizer(weight_axis(self) if per_channel else None)


class QuantConv2d(_QuantMixin, nn.Conv2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(self._input_quantizer(x), self._weight_quantizer(self.weight), self.bias)


class QuantConvTranspose2d(_QuantMixin, nn.ConvTranspose2d):
    def forward(self, x: torch.Tensor, output_size=None) -> torch.Tensor:
        pad = self._output_padding(x, output_size, self.stride, self.padding, self.kernel_size, 2, self.dilation)
        return F.conv_transpose2d(self._input_quantizer(x), self._weight_quantizer(self.weight), self.bias,
                                  self.stride, self.padding, pad, self.groups, self.dilation)


def to_quant(conv: nn.Module, per_channel: bool = True) -> nn.Module:
    """A Quant* copy of `conv` (same geometry, weights, device) with uncalibrated quantizers."""
    kw = dict(stride=conv.stride, padding=conv.padding, dilation=conv.dilation, groups=conv.groups,
              bias=conv.bias is not None, padding_mode=conv.padding_mode,
              device=conv.weight.device, dtype=conv.weight.dtype)
    if isinstance(conv, nn.ConvTranspose2d):
        q = QuantConvTranspose2d(conv.in_channels, conv.out_channels, conv.kernel_size,
                                 output_padding=conv.output_padding, **kw)
    elif isinstance(conv, nn.Conv2d):
        q = QuantConv2d(conv.in_channels, conv.out_channels, conv.kernel_size, **kw)
    else:
        raise BadInputError(f"only Conv2d and ConvTranspose2d are quantized here, not {type(conv).__name__}")
    q.load_state_dict(conv.state_dict())
    q._init_quantizers(per_channel)
    q.train(conv.training)
    return q


@dataclass(frozen=True)
class LayerPlan:
    """How one layer is quantized: its weight's per-channel axis, or None for per-tensor weights."""

    name: str
    kind: str  # "Conv2d" / "ConvTranspose2d"
    weight_axis: int | None


@dataclass(frozen=True)
class QuantPlan:
    """The layers to quantize (in model order) and those left in FP32, with the reason for each."""

    layers: tuple[LayerPlan, ...]
    skipped: tuple[tuple[str, str], ...]  # (layer, reason)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.layers)


CONVTRANSPOSE_MODES = ("skip", "per-channel", "per-tensor")


def _matches(name: str, patterns: Iterable[str]) -> str | None:
    for p in patterns:
        if name == p or name.startswith(p + "."):
            return p
    return None


def plan_quantization(model: nn.Module, skip: Iterable[str] = (), convtranspose: str = "skip",
                      scope: Iterable[str] | None = None) -> QuantPlan:
    """Every Conv2d / ConvTranspose2d under `scope` (module-name prefixes; all when None), per-channel
    weights, except the layers named (or under a prefix) in `skip`; ConvTranspose2d by `convtranspose`."""
    if convtranspose not in CONVTRANSPOSE_MODES:
        raise BadInputError(f"unknown ConvTranspose mode {convtranspose!r}: choose {', '.join(CONVTRANSPOSE_MODES)}")
    skip = [s.strip() for s in skip if s and s.strip()]
    names = {n for n, _ in model.named_modules()}
    unknown = [s for s in skip if s not in names]
    if unknown:
        raise BadInputError(f"--exclude-int8 names no module of the model: {', '.join(unknown)} "
                            f"(e.g. pts_neck.deblocks.0.0, pts_backbone.blocks.0)")
    scope = tuple(scope) if scope is not None else None
    layers, skipped = [], []
    for name, m in model.named_modules():
        if not isinstance(m, CONVS) or (scope is not None and not _matches(name, scope)):
            continue
        hit = _matches(name, skip)
        if hit:
            skipped.append((name, f"skip list ({hit})"))
        elif isinstance(m, nn.ConvTranspose2d) and convtranspose == "skip":
            skipped.append((name, "ConvTranspose2d (no INT8 deconv kernel in TensorRT)"))
        else:
            per_tensor = isinstance(m, nn.ConvTranspose2d) and convtranspose == "per-tensor"
            layers.append(LayerPlan(name, type(m).__name__, None if per_tensor else weight_axis(m)))
    return QuantPlan(tuple(layers), tuple(skipped))


def set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """Put `new` in place of the submodule called `name`."""
    parent_name, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, attr, new)


def insert_quantizers(model: nn.Module, plan: QuantPlan) -> nn.Module:
    """Replace the planned convs of `model` (in place) by Quant* convs; returns `model`."""
    for p in plan.layers:
        conv = model.get_submodule(p.name)
        set_module(model, p.name, to_quant(conv, per_channel=p.weight_axis is not None))
    return model


def quantized_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The Quant* layers of `model` by qualified name, in model order."""
    return {n: m for n, m in model.named_modules() if isinstance(m, _QuantMixin)}


def set_enabled(model: nn.Module, enabled: Mapping[str, bool] | bool) -> None:
    """Turn the quantizers of each layer on or off (a bool for all layers, or {layer: bool} for some)."""
    for name, m in quantized_layers(model).items():
        on = enabled if isinstance(enabled, bool) else enabled.get(name)
        if on is not None:
            m._input_quantizer.enabled = bool(on)
            m._weight_quantizer.enabled = bool(on)


def only_enabled(model: nn.Module, layers: Iterable[str]) -> None:
    """Quantize exactly `layers`; every other quantized layer runs in FP32."""
    keep = set(layers)
    unknown = keep - set(quantized_layers(model))
    if unknown:
        raise BadInputError(f"not quantized layers: {', '.join(sorted(unknown))}")
    set_enabled(model, {n: n in keep for n in quantized_layers(model)})


PTQ_MARK = "_cpdebug_ptq_model"  # set on a module built from a PTQ checkpoint, even where it quantizes nothing


def mark_ptq(module: nn.Module) -> nn.Module:
    """Mark `module` as part of a PTQ model: an int8 runner then runs it (a stage without quantized layers,
    such as the PFN's Linear layers, stays FP32 as it is deployed) instead of refusing a plain FP32 model."""
    setattr(module, PTQ_MARK, True)
    return module


def is_ptq(module: nn.Module) -> bool:
    return bool(getattr(module, PTQ_MARK, False)) or bool(tensor_quantizers(module))


def tensor_quantizers(model: nn.Module) -> list[TensorQuantizer]:
    """Every TensorQuantizer of `model` (inputs and weights), in model order."""
    return [m for m in model.modules() if isinstance(m, TensorQuantizer)]


def enable_calibrated(model: nn.Module) -> int:
    """Turn on exactly the quantizers that hold an amax (off: the rest), as the PTQ checkpoint deploys them;
    returns the number of quantized layers with at least one quantizer on (0: nothing to quantize)."""
    for q in tensor_quantizers(model):
        q.enabled = q.amax is not None
    return sum(1 for m in quantized_layers(model).values()
               if m._input_quantizer.enabled or m._weight_quantizer.enabled)


@contextmanager
def quantizer_state(model: nn.Module) -> Iterator[None]:
    """Context manager: every quantizer's on/off state as found, restored on exit (also on an exception); the
    base of the switches below, so a judge that flips quantizers leaves the model as it found it."""
    saved = [(q, q.enabled) for q in tensor_quantizers(model)]
    try:
        yield
    finally:
        for q, on in saved:
            q.enabled = on


@contextmanager
def only_quantized(model: nn.Module, layers: Iterable[str]) -> Iterator[None]:
    """Context manager: exactly `layers` quantized inside (both quantizers on; every other quantized layer in
    FP32); the state found restored on exit. BadInputError, before any change, for a layer not quantized."""
    with quantizer_state(model):
        only_enabled(model, layers)
        yield


@contextmanager
def without_quantizers(model: nn.Module, layers: Iterable[str]) -> Iterator[None]:
    """Context manager: the quantizers of `layers` off inside (the others as found); the state found restored
    on exit. BadInputError, before any change, for a layer not quantized."""
    off = set(layers)
    unknown = off - set(quantized_layers(model))
    if unknown:
        raise BadInputError(f"not quantized layers: {', '.join(sorted(unknown))}")
    with quantizer_state(model):
        set_enabled(model, dict.fromkeys(off, False))
        yield


@contextmanager
def calibrated_on(model: nn.Module) -> Iterator[int]:
    """Context manager: the calibrated quantizers of `model` on inside (gives `enable_calibrated`'s count),
    every quantizer's state restored after."""
    with quantizer_state(model):
        yield enable_calibrated(model)
