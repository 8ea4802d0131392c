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

from cp_debug.compare.device_diff import diff_many, identical_diff, identical_many
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


class RepeatChecks:
    """The second run's probe tensors against the first run's kept in the store's device tier (`against`), answered
    a batch at a time: each bit-for-bit check (`identical_many`) and each comparison of the pairs that differ
    (`diff_many`) reach the host in one copy a batch. Checked one at a time, the host waited on the device three
    times a probe, in the middle of the forward pass: it could not queue the next layers' kernels meanwhile (0.2 s
    of the 0.3 s an awml-base `--level all` noise run took on an H200).

    A tensor is copied when taken (the runner lends it: a later in-place op may change it), and the batch is
    answered once its copies reach `budget` bytes (and at `flush`); `found` holds each probe's noise."""

    def __init__(self, budget: int):
        self.budget = budget
        self.found: dict[str, TensorDiff] = {}
        self._batch: list[tuple] = []
        self._bytes = 0

    @classmethod
    def on(cls, device) -> "RepeatChecks":
        """Batches of at most an eighth of `device`'s free memory (CUDA; 1 GiB elsewhere), at most 1 GiB."""
        import torch

        free = torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else 1 << 30
        return cls(min(1 << 30, free // 8))

    def take(self, name: str, kept: "torch.Tensor", t: "torch.Tensor") -> None:
        nbytes = t.numel() * t.element_size()
        if self._batch and self._bytes + nbytes > self.budget:
            self.flush()
        self._batch.append((name, kept, t.detach().clone()))
        self._bytes += nbytes

    def flush(self) -> None:
        same = identical_many(self._batch)
        self.found.update({name: d for (name, _, _), d in zip(self._batch, same) if d is not None})
        differ = [(name, kept, t, None) for (name, kept, t), d in zip(self._batch, same) if d is None]
        self.found.update({d.name: d for d in diff_many(differ, one_pass=True)})
        self._batch, self._bytes = [], 0
