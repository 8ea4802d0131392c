"""A CUDA reference's probe tensors kept on the GPU between its two runs, for the noise floor.

The reference runs a stage twice: once for the values every candidate is compared with (copied to the host
store), once more for the noise floor — how far the reference is from itself. With deterministic settings a
CUDA reference usually repeats itself bit for bit; comparing that on the host meant copying every probe out a
second time and reading the store back (2.2 s of an awml-base `--level all` bisect on the H100). Here the first
run's tensors stay on the device (as much of them as fits half the free GPU memory) and the second run's are
checked against them there, bit for bit: a probe found identical and finite needs nothing more (its noise is
exactly zero); any other goes to the host comparison as before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cp_debug.compare.device_diff import identical_diff
from cp_debug.compare.diff import TensorDiff

if TYPE_CHECKING:  # pragma: no cover
    import torch


class DeviceTwins:
    """Probe tensors of a first run, on the device; see the module docstring."""

    def __init__(self, names: set[str]):
        import torch

        self.names = names
        free, _ = torch.cuda.mem_get_info()
        self.budget = free // 2
        self.used = 0
        self._kept: dict[str, torch.Tensor] = {}
        self.identical: dict[str, TensorDiff] = {}  # probe -> its (zero) noise, for those found identical

    def keep(self, name: str, t: "torch.Tensor") -> bool:
        """A first-run probe (TorchRunner.on_device_probe): kept on the device while it fits. Always False: the
        probe goes on to the host store as well."""
        nbytes = t.numel() * t.element_size()
        if name in self.names and name not in self._kept and self.used + nbytes <= self.budget:
            self._kept[name] = t.detach().clone()
            self.used += nbytes
        return False

    def same(self, name: str, t: "torch.Tensor") -> bool:
        """A second-run probe: True when it is bit-identical to its twin and finite (then `identical[name]`
        holds its zero-error diff and the probe need not reach the host)."""
        twin = self._kept.pop(name, None)
        if twin is None:
            return False
        self.used -= twin.numel() * twin.element_size()
        found = identical_diff(name, twin, t)
        if found is None:
            return False
        self.identical[name] = found
        return True

    def clear(self) -> None:
        self._kept.clear()
        self.used = 0
