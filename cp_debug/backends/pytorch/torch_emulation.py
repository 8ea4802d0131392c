"""FP16/BF16 on the CPU the way a GPU computes it: half-precision storage, float32 accumulation.

PyTorch's CPU half-precision kernels are slow for convolutions (the demo's backbone stage took 214 s in
`torch-cpu-fp16`) and are not what deploys. cuDNN/cuBLAS FP16 kernels and TensorRT keep tensors in float16
between ops and accumulate matrix products and convolutions in float32. `HalfAccumulateFp32` reproduces that
around a module whose parameters and inputs are already float16/bfloat16: every convolution, matrix product
and normalisation (the ops with a reduction inside) runs in float32 on its half inputs, upcast exactly, and its
result is rounded back to the half type — values beyond 65504 become inf as on the GPU. Every other op
(ReLU, add, concat, scatter, max, …) runs as it is, on half tensors, in torch's own half arithmetic.

Because the module really is float16/bfloat16, explicit `.float()` casts inside a model's `forward` still make
those layers float32 (the runner's precision report still sees them), and ops torch has no half kernel for
still fail as they would.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch.overrides import TorchFunctionMode

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.backends.spec import BackendSpec

# Ops with a reduction inside: float32 accumulation on the GPU (cuDNN / cuBLAS / TensorRT FP16 kernels).
ACCUMULATING_OPS = frozenset({
    "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
    "linear", "bilinear", "matmul", "__matmul__", "__rmatmul__", "mm", "bmm", "addmm", "baddbmm", "einsum",
    "batch_norm", "layer_norm", "group_norm", "instance_norm",
    # a GPU's fused attention (flash, memory-efficient) keeps QK^T and the softmax in float32 registers and writes
    # only the output in half: logits beyond 65504 do not overflow there, as they do in an unfused FP16 graph
    "scaled_dot_product_attention",
})
SDPA_NOTE = ("scaled_dot_product_attention emulated as a GPU's fused kernel runs it: QK^T and softmax in float32, "
             "the output rounded to half (attention written out as matmul + softmax runs op by op in half)")


class HalfAccumulateFp32(TorchFunctionMode):
    """Runs `ACCUMULATING_OPS` in float32 on `dtype` (float16/bfloat16) inputs and rounds the result to `dtype`;
    every other op as it is. Imported only where emulation runs (this module imports torch)."""

    def __init__(self, dtype: torch.dtype):
        super().__init__()
        self.dtype = dtype

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if getattr(func, "__name__", "") not in ACCUMULATING_OPS or not self._any_half((args, tuple(kwargs.values()))):
            return func(*args, **kwargs)
        out = func(*self._up(args), **{k: self._up(v) for k, v in kwargs.items()})
        if isinstance(out, torch.Tensor) and out.dtype == torch.float32:
            return out.to(self.dtype)
        return out

    def _up(self, v: Any):
        if isinstance(v, torch.Tensor) and v.dtype == self.dtype:
            return v.float()
        if isinstance(v, (list, tuple)):
            return type(v)(self._up(x) for x in v)
        return v

    def _any_half(self, v: Any) -> bool:
        if isinstance(v, torch.Tensor):
            return v.dtype == self.dtype
        if isinstance(v, (list, tuple)):
            return any(self._any_half(x) for x in v)
        return False


def check_cpu_reduced(dtype) -> str:
    """Does torch's CPU build really compute conv in `dtype`? Measured once per activate, on a tiny conv."""
    name = str(dtype).replace("torch.", "")
    try:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(1, 8, 6, 6, generator=g)
        w = torch.randn(4, 8, 3, 3, generator=g)
        y = torch.nn.functional.conv2d(x.to(dtype), w.to(dtype))
        y32 = torch.nn.functional.conv2d(x.to(dtype).float(), w.to(dtype).float())
    except RuntimeError as err:
        return f"not computed in {name}: torch CPU has no {name} conv ({str(err).splitlines()[0][:80]})"
    if y.dtype != dtype:
        return f"not computed in {name}: conv returned {y.dtype}"
    rounded = bool((y.float() == y32.to(dtype).float()).float().mean() > 0.9)
    return (f"torch CPU computes {name} conv natively ({name} storage, float32 accumulation"
            f"{'' if rounded else ', rounding differs from the float32-accumulate model'})")


def attention_setting(spec: "BackendSpec", emulated: bool) -> str:
    """How `scaled_dot_product_attention` runs for a half-precision torch backend: what a user needs to tell a fused
    attention (float32 logits, no overflow) from an unfused one (logits stored in half)."""
    if spec.device == "cpu":
        if emulated:
            return SDPA_NOTE
        return "scaled_dot_product_attention in torch's CPU half kernels, not emulated (native mode)"
    cuda = torch.backends.cuda
    enabled = [name for name, on in (("flash", cuda.flash_sdp_enabled()), ("memory-efficient",
               cuda.mem_efficient_sdp_enabled()), ("cudnn", getattr(cuda, "cudnn_sdp_enabled", lambda: False)()),
               ("math", cuda.math_sdp_enabled())) if on]
    return (f"scaled_dot_product_attention kernels enabled: {', '.join(enabled) or 'none'}; torch takes the first "
            "the shapes and dtype allow (flash and memory-efficient keep QK^T and softmax in float32, math stores "
            "them in half); attention written out as matmul + softmax runs op by op")
