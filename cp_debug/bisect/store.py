"""Reference tensors kept for comparison, within a memory budget: past it, arrays go to disk (memory-mapped)."""

from __future__ import annotations

import os
import shutil
import tempfile

import numpy as np


class TensorStore:
    def __init__(self, budget_bytes: int = 2 << 30):
        self.budget = budget_bytes
        self._mem: dict[str, np.ndarray] = {}
        self._disk: dict[str, str] = {}
        self._dir: str | None = None
        self.in_memory = 0
        self.spilled = 0

    def put(self, name: str, arr: np.ndarray) -> None:
        self.drop(name)
        arr = np.ascontiguousarray(arr)
        if self.in_memory + arr.nbytes <= self.budget:
            self._mem[name] = arr
            self.in_memory += arr.nbytes
            return
        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix="cpdebug-store-")
        path = os.path.join(self._dir, f"{len(self._disk)}.npy")
        np.save(path, arr)
        self._disk[name] = path
        self.spilled += arr.nbytes

    def get(self, name: str) -> np.ndarray:
        if name in self._mem:
            return self._mem[name]
        return np.load(self._disk[name], mmap_mode="r")

    def __contains__(self, name: str) -> bool:
        return name in self._mem or name in self._disk

    def drop(self, name: str) -> None:
        arr = self._mem.pop(name, None)
        if arr is not None:
            self.in_memory -= arr.nbytes
        path = self._disk.pop(name, None)
        if path:
            os.remove(path)

    def close(self) -> None:
        self._mem.clear()
        self._disk.clear()
        self.in_memory = 0
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __del__(self):
        self.close()
