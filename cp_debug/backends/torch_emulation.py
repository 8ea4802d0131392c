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

from typing import Any

# Ops with a reduction inside: float32 accumulation on the GPU (cuDNN / cuBLAS / TensorRT FP16 kernels).
ACCUMULATING_OPS = frozenset({
    "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
    "linear", "bilinear", "matmul", "__matmul__", "__rmatmul__", "mm", "bmm", "addmm", "baddbmm", "einsum",
    "batch_norm", "layer_norm", "group_norm", "instance_norm",
})


def emulation_mode(dtype):
    """A `TorchFunctionMode` that runs `ACCUMULATING_OPS` in float32 on `dtype` inputs and rounds to `dtype`."""
    import torch
    from torch.overrides import TorchFunctionMode

    def up(v: Any):
        if isinstance(v, torch.Tensor) and v.dtype == dtype:
            return v.float()
        if isinstance(v, (list, tuple)):
            return type(v)(up(x) for x in v)
        return v

    class HalfAccumulateFp32(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if getattr(func, "__name__", "") not in ACCUMULATING_OPS or not _has(args, kwargs, dtype):
                return func(*args, **kwargs)
            out = func(*up(args), **{k: up(v) for k, v in kwargs.items()})
            if isinstance(out, torch.Tensor) and out.dtype == torch.float32:
                return out.to(dtype)
            return out

    return HalfAccumulateFp32()


def _has(args, kwargs, dtype) -> bool:
    import torch

    def any_half(v) -> bool:
        if isinstance(v, torch.Tensor):
            return v.dtype == dtype
        if isinstance(v, (list, tuple)):
            return any(any_half(x) for x in v)
        return False

    return any_half(args) or any_half(tuple(kwargs.values()))
