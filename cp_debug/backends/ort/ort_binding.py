"""ONNX Runtime fed and read through IO binding: torch tensors in, torch tensors out, on the session's device.

An input is bound where it lies, by its data pointer (ONNX Runtime copies a host input to a CUDA session's device
itself); the outputs are bound to the session's device, allocated there by ONNX Runtime and handed to torch without
a copy: on CUDA through `__cuda_array_interface__` (the tensor keeps ONNX Runtime's value alive), on the CPU through
numpy. So a CUDA pipeline's values never cross the host between stages (on the H100, copying awml-base's
1×32×1020×1020 input in and the head maps out cost 15–25 ms a run).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from cp_debug.backends.feed import check_names, check_shape
from cp_debug.errors import BadInputError

if TYPE_CHECKING:  # pragma: no cover
    import torch

# ONNX Runtime's element types: (the array-interface type string, numpy's name = torch's name)
_TYPES = {
    "tensor(float)": ("<f4", "float32"), "tensor(float16)": ("<f2", "float16"), "tensor(double)": ("<f8", "float64"),
    "tensor(int64)": ("<i8", "int64"), "tensor(int32)": ("<i4", "int32"), "tensor(int16)": ("<i2", "int16"),
    "tensor(int8)": ("|i1", "int8"), "tensor(uint8)": ("|u1", "uint8"), "tensor(bool)": ("|b1", "bool"),
}


def run_bound(sess, feed: dict[str, "torch.Tensor"], inputs: Mapping[str, tuple[np.dtype | None, Sequence]],
              outputs: Sequence[str], device: str, device_id: int = 0) -> dict[str, "torch.Tensor"]:
    """Run `sess` on torch tensors; `inputs` maps each input to (dtype or None, dims) as `feed.check_feed` takes
    them; `outputs` are bound on `device` ("cpu" or "cuda") and returned as torch tensors there, by name."""
    import torch

    check_names(feed, inputs)
    binding = sess.io_binding()
    held = []  # the bound tensors (casts, contiguous copies) live until the run is over
    for name, value in feed.items():
        want, dims = inputs[name]
        t = _cast(name, value, want)
        check_shape(name, tuple(t.shape), dims)
        held.append(t)
        binding.bind_input(name, t.device.type, t.device.index or 0, _np_dtype(t), tuple(t.shape), t.data_ptr())
    for name in outputs:
        binding.bind_output(name, device, device_id)
    for dev in {t.device for t in held if t.is_cuda}:
        torch.cuda.current_stream(dev).synchronize()  # torch's work on the inputs is done before ORT reads them
    sess.run_with_iobinding(binding)
    binding.synchronize_outputs()
    return {name: _to_torch(v, device, device_id) for name, v in zip(outputs, binding.get_outputs())}


def _cast(name: str, value, want: np.dtype | None) -> "torch.Tensor":
    """`value` as a contiguous tensor of the input's dtype where the kinds agree (float32 → float16 rounds to nearest
    even, as ONNX Runtime's Cast does)."""
    import torch

    if not isinstance(value, torch.Tensor):
        raise BadInputError(f"input {name!r} is a {type(value).__name__}; infer_device takes torch tensors")
    t = value.detach()
    if want is not None and _np_dtype(t) != np.dtype(want):
        want = np.dtype(want)
        have = _np_dtype(t)
        if want.kind != have.kind and not (want.kind in "iu" and have.kind in "iu"):
            raise BadInputError(f"input {name!r} has dtype {have.name}, the model wants {want.name}")
        t = t.to(getattr(torch, want.name))
    return t.contiguous()


def _np_dtype(t: "torch.Tensor") -> np.dtype:
    return np.dtype(str(t.dtype).replace("torch.", ""))


class _DeviceValue:
    """An ONNX Runtime value on a CUDA device, seen by torch through the CUDA array interface (kept alive by the
    tensor torch makes of it)."""

    def __init__(self, value, typestr: str):
        self._value = value
        self.__cuda_array_interface__ = {"shape": tuple(value.shape()), "typestr": typestr,
                                         "data": (value.data_ptr(), False), "version": 2, "strides": None}


def _to_torch(value, device: str, device_id: int) -> "torch.Tensor":
    import torch

    typestr, dtype = _TYPES.get(value.data_type(), (None, None))
    if device != "cuda":
        return torch.from_numpy(value.numpy())
    if typestr is None:
        raise BadInputError(f"ONNX Runtime returned {value.data_type()}, which torch cannot hold on the device")
    shape = tuple(value.shape())
    if int(np.prod(shape, dtype=np.int64)) == 0:
        return torch.empty(shape, dtype=getattr(torch, dtype), device=f"cuda:{device_id}")
    return torch.as_tensor(_DeviceValue(value, typestr), device=f"cuda:{device_id}")
