"""The tensors a torch module returns or a probe hook sees, for `torch_runner.py`: found (`first_tensor`, `flatten`),
copied where they lie or to the host (`device_copy`, `to_numpy`: a copy, never a view), CUDA probes through one
page-locked host buffer (`STAGING`); the runner's copy of a module made on its device (`module_copy_on`). Torch is
imported where it is used, as in the runner.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def is_tensor(v) -> bool:
    import torch

    return isinstance(v, torch.Tensor)


def first_tensor(v):
    if is_tensor(v):
        return v
    if isinstance(v, dict):
        v = list(v.values())
    if isinstance(v, (list, tuple)):
        for item in v:
            t = first_tensor(item)
            if t is not None:
                return t
    return None


def flatten(v) -> list:
    if isinstance(v, dict):
        return [x for item in v.values() for x in flatten(item)]
    if isinstance(v, (list, tuple)):
        return [x for item in v for x in flatten(item)]
    return [v]


class PinnedStaging:
    """One page-locked host buffer for the process, grown to the largest probe (in powers of two), through which
    CUDA probes reach `on_probe`. Shared by every TorchRunner: a lent array lives only during its `on_probe`
    call, and runners infer one at a time."""

    def __init__(self):
        self._buf = None

    def lend(self, t) -> np.ndarray:
        """`t` as float32 in the buffer: a read-only array, valid until the next `lend`."""
        import torch

        src = t.detach()
        if src.dtype != torch.float32:
            src = src.float()  # cast on the device
        n = src.numel()
        if self._buf is None or self._buf.numel() < n:
            self._buf = None
            empty_cache = getattr(torch._C, "_host_emptyCache", None)
            if empty_cache is not None:
                empty_cache()  # torch's host allocator would keep the smaller buffer cached (resident) for good
            self._buf = torch.empty(1 << max(0, n - 1).bit_length(), dtype=torch.float32, pin_memory=True)
        view = self._buf[:n].view(src.shape)
        view.copy_(src)  # synchronous: the host buffer is filled when it returns
        arr = view.numpy()
        arr.flags.writeable = False
        return arr


STAGING = PinnedStaging()


def device_copy(t, copy: bool = True):
    """`t` where it is, float32 if floating (as `to_numpy` gives it); a copy when `copy`, never a view then."""
    src = t.detach()
    out = src.float() if src.is_floating_point() else src
    if copy and out.data_ptr() == src.data_ptr():
        out = out.clone()
    return out


def to_numpy(t) -> np.ndarray:
    """A copy, never a view: a later in-place op (ReLU(inplace=True) after a BatchNorm) must not change it."""
    src = t.detach()
    out = src.float() if src.is_floating_point() else src
    out = out.contiguous().cpu()  # a channels-last tensor reaches the host in NCHW order
    if out.data_ptr() == src.data_ptr():
        out = out.clone()
    return out.numpy()


def module_copy_on(module, device):
    """A copy of `module` (`copy.deepcopy`'s) whose parameters and buffers are made on `device` straight from the
    source's, not copied on the host first and moved after: for a CUDA runner, no second host copy of the model's
    weights (a large model's RAM twice over) and no host memcpy (0.2 s of the awml-base bisect's two torch runners
    on the 2 x H200 host's profile). Each tensor keeps its dtype (a cast stays the caller's, after), its
    `requires_grad` and a parameter's attributes; tied tensors stay tied."""
    import copy as copying
    import itertools

    import torch

    memo: dict[int, Any] = {}
    for t in itertools.chain(module.parameters(), module.buffers()):
        if id(t) in memo:
            continue
        data = t.detach().to(device=device, copy=True)
        if isinstance(t, torch.nn.Parameter):
            moved = torch.nn.Parameter(data, requires_grad=t.requires_grad)
            moved.__dict__.update(copying.deepcopy(t.__dict__, memo))
            data = moved
        memo[id(t)] = data
    return copying.deepcopy(module, memo)
