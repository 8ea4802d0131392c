"""What a fix was written with and what this machine has: the versions `fix --check` compares (a fix's verification
holds only for the toolchain it ran on), and how a change between the two is said."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# Recorded environment keys compared by --check, in the order they are reported.
VERSION_KEYS = ("onnxruntime", "tensorrt", "torch_cuda", "nvidia_driver", "cudnn", "gpu", "torch", "onnx",
                "onnx_graphsurgeon", "polygraphy", "modelopt", "numpy", "python")


def toolchain() -> dict:
    """This machine's versions: `determinism.environment()` plus the NVIDIA driver (None without one)."""
    from cp_debug.determinism import environment

    env = environment()
    env["nvidia_driver"] = nvidia_driver()
    return env


def nvidia_driver() -> str | None:
    """The NVIDIA kernel driver's version, from /proc (no subprocess); None where there is none."""
    try:
        text = Path("/proc/driver/nvidia/version").read_text()
    except OSError:
        return None
    for word in text.split():
        parts = word.split(".")
        if len(parts) >= 2 and all(p.isdigit() for p in parts):
            return word
    return None


@dataclass(frozen=True)
class Change:
    name: str
    recorded: object
    now: object

    def text(self) -> str:
        return f"{self.name} {self.recorded} -> {self.now}"


def version_changes(recorded: dict, now: dict) -> tuple[Change, ...]:
    return tuple(Change(k, recorded.get(k), now.get(k)) for k in VERSION_KEYS
                 if k in recorded and recorded.get(k) != now.get(k))
