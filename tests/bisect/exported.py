"""Planted models exported once per test session, through the loader `--torch FILE:FUNC` uses."""

from __future__ import annotations

import functools
from pathlib import Path

HERE = Path(__file__).parent


@functools.lru_cache(maxsize=None)
def exported(file: str, func: str):
    """(ONNX model, feed) of `FUNC` in tests/bisect/`file`, exported with the TorchScript exporter (fast)."""
    from cp_debug.bisect.subjects.loaders import torch_subject

    subject = torch_subject(f"{HERE / file}:{func}", exporter="torchscript")
    return subject.stages[0].onnx(), subject.inputs
