"""A built model (`build() -> (net, (x,))`) exported as its users export it (torch.onnx's TorchScript exporter, one
input 'x'), with frames to calibrate on (the input itself and three random ones of its shape): the Q/DQ files of
test_root_set.py and test_constant_candidate.py are quantized from it."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np


def exported(build, path: Path, output: str) -> tuple[np.ndarray, list[np.ndarray]]:
    """`build`'s model written to `path`; (its input, the calibration frames)."""
    import torch

    net, (x,) = build()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (x,), str(path), input_names=["x"], output_names=[output], dynamo=False)
    rng = np.random.default_rng(0)
    return x.numpy(), [x.numpy()] + [rng.standard_normal(tuple(x.shape)).astype(np.float32) for _ in range(3)]
