"""Planted models exported once per test session, through the loader `--torch FILE:FUNC` uses (`exported`); a built
model (`build() -> (net, (x,))`) written as its users export it, with frames to calibrate on (`written`: the Q/DQ
files of test_root_set.py and test_constant_candidate.py are quantized from it)."""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent


@functools.lru_cache(maxsize=None)
def exported(file: str, func: str):
    """(ONNX model, feed) of `FUNC` in tests/bisect/`file`, exported with the TorchScript exporter (fast)."""
    from cp_debug.bisect.subjects.loaders import torch_subject

    subject = torch_subject(f"{HERE / file}:{func}", exporter="torchscript")
    return subject.stages[0].onnx(), subject.inputs


def written(build, path: Path, output: str) -> tuple[np.ndarray, list[np.ndarray]]:
    """`build`'s model written to `path` (torch.onnx's TorchScript exporter, one input 'x'); (its input, the
    calibration frames: the input itself and three random ones of its shape)."""
    import torch

    net, (x,) = build()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (x,), str(path), input_names=["x"], output_names=[output], dynamo=False)
    rng = np.random.default_rng(0)
    return x.numpy(), [x.numpy()] + [rng.standard_normal(tuple(x.shape)).astype(np.float32) for _ in range(3)]
