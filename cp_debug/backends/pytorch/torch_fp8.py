"""`torch-cpu-fp8` / `torch-cuda-fp8` (issue 86, item 1): the PyTorch module with every nn.Linear and nn.Conv1d/2d/3d
reading its input and its weight through FP8 (E4M3), per tensor, as `precision/fp8.py` writes ModelOpt's FP8 for ONNX
(and as ModelOpt's torch `FP8_DEFAULT_CFG` quantizes): scale amax / 448, the weight's max |w|, the input's max |x|
over the calibration feeds (or the first input run, where none are given: the ORT lane's rule), values divided by the
scale in float32, clamped to ±448 and cast to `torch.float8_e4m3fn` (round to nearest even) — ONNX Runtime's
FP32-input QuantizeLinear (saturate=1) equals that cast bit for bit, so this lane and `ort-cpu-fp8` agree on the same
model up to float32 summation order. An input read straight from a Softmax takes ModelOpt's fixed 1/448.

How a layer computes: **emulated** (float32 arithmetic on the dequantized E4M3 values, as ONNX Runtime's CPU provider
computes a Q/DQ graph) everywhere; on CUDA with compute capability 8.9+ (Ada, Hopper: H100/H200) an nn.Linear whose
in/out features are multiples of 16 runs as a **real FP8 GEMM** instead, `torch._scaled_mm` (E4M3 operands, the
second column-major, per-tensor float32 scales, float32 output; the bias added after), which differs from the
emulation by float32 accumulation order inside the GEMM (about 0.00025·√K relative, PyTorch's own test) — far inside
FP8's budget. Convolutions and layers of other shapes stay emulated; a layer `_scaled_mm` refuses is emulated from
then on. Which layers ran which way is said in the settings and the precision notes.

Not quantized, as ModelOpt's default config leaves them (said in the notes): F.scaled_dot_product_attention's
internals (QK^T, softmax, ·V), matmuls between activations (`ort-*-fp8` quantizes every MatMul's inputs), F.linear /
F.conv*d of a weight outside nn.Linear / nn.Conv; and, making the run "mixed": nn.MultiheadAttention's projections
(computed inside one fused function, never through its Linear modules' forward) and nn.ConvTranspose (as `ort-*-fp8`
leaves a ConvTranspose out of FP8).

The layers are found by their weight's identity in a `TorchFunctionMode` (as `torch_emulation.py`): `F.linear` /
`F.conv*d` called with a known layer's weight computes the quantized way; the module itself is not changed, so the
calibration runs it in float32. Imported only where an FP8 torch lane runs (this module imports torch).
"""

from __future__ import annotations

import weakref
from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from cp_debug.precision.fp8 import E4M3_MAX, FLUSH_NOTE

LAYERS = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)
COMPUTE = {"linear": F.linear, "conv1d": F.conv1d, "conv2d": F.conv2d, "conv3d": F.conv3d}
SOFTMAX = ("softmax", "_softmax")
# calls left in float32, counted for the notes: fused attention, products of two activations, fused MHA
UNQUANTIZED = {"scaled_dot_product_attention": "F.scaled_dot_product_attention", "matmul": "matmul",
               "__matmul__": "matmul", "__rmatmul__": "matmul", "bmm": "matmul", "mm": "matmul", "baddbmm": "matmul",
               "addmm": "matmul", "einsum": "einsum", "multi_head_attention_forward": "nn.MultiheadAttention",
               "_native_multi_head_attention": "nn.MultiheadAttention",
               "_transformer_encoder_layer_fwd": "nn.MultiheadAttention", "conv_transpose1d": "nn.ConvTranspose",
               "conv_transpose2d": "nn.ConvTranspose", "conv_transpose3d": "nn.ConvTranspose"}
# layers with weights that ran in float32: the run is "mixed" (ort-*-fp8 leaves a ConvTranspose out of FP8 too)
MIXED = {"nn.MultiheadAttention": "computed their projections in float32 (one fused function, never through their "
                                  "Linear modules)",
         "nn.ConvTranspose": "ran in float32: this lane quantizes Linear and Conv only, as ort-*-fp8 quantizes Conv, "
                             "Gemm and MatMul"}
GEMM_CAPABILITY = (8, 9)  # FP8 tensor cores: Ada (8.9), Hopper (9.0) and later
GEMM_ALIGN = 16  # torch._scaled_mm: K and N multiples of 16
_TINY = float(np.finfo(np.float32).tiny)  # as precision/fp8.py: an all-zero tensor's amax


def fp8_scale(amax: float) -> np.float32:
    """ModelOpt's per-tensor scale amax / 448, rounded to float32 as `precision/fp8.py` writes it into the graph."""
    return np.float32(max(float(amax), _TINY) / E4M3_MAX)


def to_e4m3(x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """`x / scale` in float32, saturated to ±448, cast to float8_e4m3fn: QuantizeLinear with saturate=1."""
    return (x.float() / scale).clamp(-E4M3_MAX, E4M3_MAX).to(torch.float8_e4m3fn)


def scaled_linear(x8: torch.Tensor, w8: torch.Tensor, sx: torch.Tensor, sw: torch.Tensor,
                  bias: torch.Tensor | None) -> torch.Tensor:
    """y = (x8·sx) @ (w8·sw)^T + bias as one FP8 GEMM: `x8` (…, K) and `w8` (N, K) float8_e4m3fn, `sx` / `sw` 0-d
    float32 scales on their device; float32 out, the bias added after (cuBLASLt takes no float32 bias with FP8)."""
    k = x8.shape[-1]
    y = torch._scaled_mm(x8.reshape(-1, k).contiguous(), w8.t(), scale_a=sx, scale_b=sw, out_dtype=torch.float32)
    if bias is not None:
        y = y + bias.float()
    return y.reshape(*x8.shape[:-1], w8.shape[0])


@dataclass(eq=False)
class Fp8Layer:
    """One quantized layer: its weight in E4M3 (codes and dequantized), its input's calibrated range and how it ran."""

    name: str
    kind: str  # Linear, Conv2d, …
    weight: torch.nn.Parameter  # the module's own (its identity finds the layer)
    w8: torch.Tensor
    w_scale: torch.Tensor  # 0-d float32, on the layer's device
    w_dq: torch.Tensor
    flushed: float  # the share of the weight's nonzero values its scale rounds to zero
    emulated_why: str | None  # why it cannot be an FP8 GEMM here; None: it can
    amax: float | None = None  # the input's max |x| (calibration); None: not calibrated yet
    softmax_fed: bool = False  # its input came straight from a Softmax: ModelOpt's fixed 1/448
    late: bool = False  # calibration never reached it: its range is the first input that did
    gemm_calls: int = 0
    emulated_calls: int = 0
    _x_scale: torch.Tensor | None = None

    def x_scale(self) -> torch.Tensor:
        if self._x_scale is None:
            s = fp8_scale(1.0 if self.softmax_fed else self.amax)
            self._x_scale = torch.tensor(s, dtype=torch.float32, device=self.w_dq.device)
        return self._x_scale


class Fp8Lane:
    """The FP8 layers of one module copy (`TorchRunner`'s), their calibration and what ran; `mode()` around a forward
    computes them quantized, `calibrating()` records their inputs' ranges in float32."""

    def __init__(self, module: torch.nn.Module, device: torch.device):
        self.device = device
        self.gemm_here = _gemm_unavailable(device)  # None: FP8 GEMMs run here; else why not
        self.layers: dict[int, Fp8Layer] = {}
        for name, m in module.named_modules():
            w = getattr(m, "weight", None)
            if isinstance(m, LAYERS) and isinstance(w, torch.Tensor) and w.is_floating_point():
                self.layers[id(w)] = _quantized(name, m, w, self.gemm_here)
        self.calibration: int | None = None  # feeds calibrated on (0: the first input run); None: not yet
        self.unquantized: Counter = Counter()

    @property
    def calibrated(self) -> bool:
        return self.calibration is not None

    def calibrating(self, feeds: int):
        """A context: the forwards inside it run float32 and record each layer's input range (max over them)."""
        for layer in self.layers.values():
            layer.amax, layer.softmax_fed, layer.late, layer._x_scale = None, False, False, None
        self.calibration = feeds
        return _Fp8Mode(self, calibrate=True)

    def mode(self):
        return _Fp8Mode(self, calibrate=False)

    def release(self) -> None:
        """Drop the tensors (the runner deactivates); what ran stays readable for the report."""
        for layer in self.layers.values():
            layer.weight = layer.w8 = layer.w_scale = layer.w_dq = layer._x_scale = None

    # -- the report ----------------------------------------------------------------------------------------
    def ran(self) -> list[Fp8Layer]:
        return [layer for layer in self.layers.values() if layer.gemm_calls or layer.emulated_calls]

    def settings(self) -> dict:
        ran = self.ran()
        gemm = [la.name for la in ran if la.gemm_calls]
        return {"fp8": {
            "arithmetic": "fp8_gemm" if ran and len(gemm) == len(ran) else "fp8_gemm+emulated" if gemm
            else "emulated",
            "quantized_layers": len(self.layers),
            "fp8_gemm_layers": gemm,
            "emulated_layers": {la.name: la.emulated_why or "emulated after _scaled_mm refused it"
                                for la in ran if la.emulated_calls},
            "fp8_gemm_unavailable": self.gemm_here,
            "calibration": _calibration_words(self.calibration),
            "weights_flushed": {f"{la.name}.weight": round(la.flushed, 4) for la in self.layers.values()
                                if la.flushed >= FLUSH_NOTE},
            "not_quantized": dict(self.unquantized),
        }}

    def report(self, notes: list[str]) -> str:
        """The effective precision ("fp8", or "mixed" where layers with weights ran in float32: `MIXED`);
        its notes, first of all emulated or ran on FP8 hardware, appended to `notes`."""
        ran = self.ran()
        gemm = [la for la in ran if la.gemm_calls]
        emulated = [la for la in ran if la.emulated_calls]
        kinds = Counter(la.kind for la in ran)
        what = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
        how = ("E4M3 inputs and weights (per-tensor scales amax/448, ModelOpt's), float32 arithmetic on the "
               "dequantized values")
        if not ran:
            notes.append("no nn.Linear / nn.Conv layer ran: nothing was quantized")
        elif not gemm:
            where = self.gemm_here or f"{_gpu_name(self.device)}: no layer here fits an FP8 GEMM"
            notes.append(f"emulated — not run on FP8 hardware ({where}): {len(ran)} layers ({what}) with {how}")
        else:
            rest = f"; emulated, float32 arithmetic on E4M3 values: {_names(emulated, why=True)}" if emulated else ""
            notes.append(f"ran on FP8 hardware: {len(gemm)} of {len(ran)} layers as FP8 GEMMs (torch._scaled_mm on "
                         f"{_gpu_name(self.device)}: E4M3 operands, per-tensor scales, float32 output, bias added "
                         f"after): {_names(gemm)}{rest}")
        notes.append(f"calibrated by max over {_calibration_words(self.calibration)}"
                     + (f"; {sum(la.late for la in ran)} layer(s) calibration never reached took the range of the "
                        "first input that did" if any(la.late for la in ran) else ""))
        if softmax := sum(la.softmax_fed for la in ran):
            notes.append(f"{softmax} layer input(s) read straight from a Softmax at ModelOpt's fixed scale 1/448")
        flushed = sorted(((la.name, la.flushed) for la in self.layers.values() if la.flushed >= FLUSH_NOTE),
                         key=lambda kv: -kv[1])
        if flushed:
            notes.append("FP8's per-tensor scale (max |w| / 448) flushes to zero " + ", ".join(
                f"{share:.0%} of {name}.weight's nonzero values" for name, share in flushed[:3]))
        plain = {k: n for k, n in self.unquantized.items() if k not in MIXED}
        if plain:
            notes.append("not quantized (float32, as ModelOpt's default FP8 config leaves them): " + ", ".join(
                f"{n} {k} call(s)" for k, n in sorted(plain.items())) + "; F.scaled_dot_product_attention's "
                "internals (QK^T, softmax, ·V) are never quantized here, while ort-*-fp8 quantizes every MatMul's "
                "inputs and a Softmax output at 1/448")
        mixed = [f"{self.unquantized[k]} {k} call(s) {why}" for k, why in MIXED.items() if self.unquantized.get(k)]
        notes.extend(mixed)
        if mixed:
            return "mixed"
        return "fp8"


class _Fp8Mode(TorchFunctionMode):
    """`F.linear` / `F.conv*d` of a known layer's weight: its input's range recorded (calibrate) or the layer computed
    on E4M3 values; a Softmax's outputs remembered (a layer reading one takes 1/448); every other op as it is."""

    def __init__(self, lane: Fp8Lane, calibrate: bool):
        super().__init__()
        self.lane, self.calibrate = lane, calibrate
        self._softmax: dict[int, weakref.ref] = {}
        self._left: Counter = Counter()  # this forward's calls left in float32

    def __exit__(self, *exc):
        for what, n in self._left.items():  # per forward: the most any one saw, not a sum over a run's forwards
            self.lane.unquantized[what] = max(self.lane.unquantized[what], n)
        return super().__exit__(*exc)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in COMPUTE and len(args) > 1 and isinstance(args[0], torch.Tensor):
            layer = self.lane.layers.get(id(args[1]))
            if layer is not None and layer.weight is args[1]:
                return self._layer(layer, name, args, kwargs)
            self._left[f"F.{name} of a weight outside nn.Linear / nn.Conv"] += 1
        out = func(*args, **kwargs)
        if name in SOFTMAX and isinstance(out, torch.Tensor):
            self._softmax[id(out)] = weakref.ref(out)
        elif name in UNQUANTIZED:
            self._left[UNQUANTIZED[name]] += 1
        return out

    def _layer(self, layer: Fp8Layer, name: str, args: tuple, kwargs: dict):
        x = args[0]
        ref = self._softmax.get(id(x))
        fed = ref is not None and ref() is x
        if self.calibrate or layer.amax is None:
            top = float(x.detach().abs().max()) if x.numel() else 0.0
            layer.amax = top if layer.amax is None else max(layer.amax, top)
            layer.softmax_fed, layer.late = layer.softmax_fed or fed, not self.calibrate
            if self.calibrate:
                return COMPUTE[name](*args, **kwargs)
        sx = layer.x_scale()
        x8 = to_e4m3(x, sx)
        if layer.emulated_why is None and x.numel():
            try:
                y = scaled_linear(x8, layer.w8, sx, layer.w_scale, args[2] if len(args) > 2 else kwargs.get("bias"))
                layer.gemm_calls += 1
                return y.to(x.dtype)
            except RuntimeError as err:  # a shape or layout the FP8 GEMM refuses: emulated from now on
                layer.emulated_why = f"torch._scaled_mm refused it ({str(err).splitlines()[0][:100]})"
        layer.emulated_calls += 1
        y = COMPUTE[name](x8.float() * sx, layer.w_dq, *args[2:], **kwargs)
        return y.to(x.dtype)


def _quantized(name: str, module: torch.nn.Module, w: torch.Tensor, gemm_here: str | None) -> Fp8Layer:
    """The layer's weight in E4M3 at scale max|w| / 448 (per tensor) and whether it can be an FP8 GEMM here."""
    w32 = w.detach().float()
    scale = torch.tensor(fp8_scale(float(w32.abs().max()) if w32.numel() else 0.0), device=w.device)
    w8 = to_e4m3(w32, scale).contiguous()
    w_dq = w8.float() * scale
    nonzero = w32 != 0
    flushed = float((nonzero & (w_dq == 0)).sum()) / max(int(nonzero.sum()), 1)
    kind = type(module).__name__
    if gemm_here is not None:
        why = gemm_here
    elif not isinstance(module, torch.nn.Linear):
        why = "a convolution: no FP8 GEMM for it here"
    elif module.in_features % GEMM_ALIGN or module.out_features % GEMM_ALIGN:
        why = (f"in/out features {module.in_features}/{module.out_features}: _scaled_mm needs multiples of "
               f"{GEMM_ALIGN}")
    else:
        why = None
    return Fp8Layer(name, kind, w, w8, scale, w_dq, flushed, why)


def _gemm_unavailable(device: torch.device) -> str | None:
    """None where `torch._scaled_mm` runs FP8 GEMMs on `device`; else why not, in words."""
    if device.type != "cuda":
        return "no FP8 GEMM on the CPU"
    if not hasattr(torch, "_scaled_mm"):
        return f"torch {torch.__version__} has no torch._scaled_mm"
    cap = torch.cuda.get_device_capability(device)
    if cap < GEMM_CAPABILITY:
        return f"{_gpu_name(device)} has no FP8 tensor cores (compute capability 8.9+)"
    return None


def _gpu_name(device: torch.device) -> str:
    cap = torch.cuda.get_device_capability(device)
    return f"{torch.cuda.get_device_name(device)} (sm_{cap[0]}{cap[1]})"


def _names(layers: list[Fp8Layer], why: bool = False, most: int = 4) -> str:
    said = [f"{la.name} ({la.emulated_why})" if why and la.emulated_why else la.name for la in layers[:most]]
    return ", ".join(said) + (f" and {len(layers) - most} more" if len(layers) > most else "")


def _calibration_words(feeds: int | None) -> str:
    if feeds is None:
        return "nothing yet"
    return "the first input run (no calibration feeds given)" if feeds == 0 else f"{feeds} calibration feed(s)"
