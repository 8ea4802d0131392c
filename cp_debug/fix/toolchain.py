"""What a fix was written with and what this machine has: the versions `fix --check` compares (a fix's verification
holds only for the toolchain it ran on), and how a change between the two is said."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cp_debug.errors import ExitCode

# Recorded environment keys compared by --check, in the order they are reported.
VERSION_KEYS = ("onnxruntime", "tensorrt", "torch_cuda", "nvidia_driver", "cudnn", "gpu", "torch", "onnx",
                "onnx_graphsurgeon", "polygraphy", "modelopt", "numpy", "python")


def toolchain() -> dict:
    """This machine's versions: `determinism.environment()` plus the NVIDIA driver (None without one)."""
    from cp_debug.determinism import environment

    env = environment()
    env["nvidia_driver"] = nvidia_driver()
    return env


def stamp(progress=None) -> tuple[dict, str, str]:
    """(the toolchain's versions, cp_debug's, now in ISO 8601 UTC): what a fix outcome records it ran with."""
    import datetime

    from cp_debug.fix.figures import progress_step

    import cp_debug

    with progress_step(progress, "versions"):
        env = toolchain()
    return env, cp_debug.__version__, datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


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


@dataclass(frozen=True)
class CheckedFix:
    """What `fix --check DIR` found, whatever wrote DIR: the verification run again here (`verification`: anything
    with `holds` and `to_json()`), and what changed since it was written."""

    path: Path
    recorded_holds: bool | None
    verification: Any
    versions: tuple[Change, ...]  # versions that differ from the record
    figures: tuple[Change, ...]  # verification figures that differ from the record
    modified_files: tuple[str, ...]

    @property
    def holds(self) -> bool:
        return self.verification.holds

    @property
    def exit_code(self) -> ExitCode:
        """OK when the written fix holds here; NOT_VERIFIED when it does not."""
        return ExitCode.OK if self.holds else ExitCode.NOT_VERIFIED

    def to_json(self) -> dict:
        return {"schema": "cp_debug.fix_check/1", "path": str(self.path), "holds": self.holds,
                "recorded_holds": self.recorded_holds,
                "changed_versions": [{"name": c.name, "recorded": c.recorded, "now": c.now} for c in self.versions],
                "changed_figures": [{"name": c.name, "recorded": c.recorded, "now": c.now} for c in self.figures],
                "modified_files": list(self.modified_files), "verification": self.verification.to_json()}
