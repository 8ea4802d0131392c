"""A model whose own code makes the libraries speak, as `--torch noisy.py:build`: ONNX Runtime's C++ log (a
session on a graph with an unused initializer), a root-logger warning (as ORT's quantizer logs) and a numpy
RuntimeWarning, on every forward — the three ways third-party warnings reach a terminal."""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import nn


def _onnxruntime_speaks() -> None:
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    unused = helper.make_tensor("unused_noise", TensorProto.FLOAT, [2], [1.0, 2.0])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "noisy", [x], [y], [unused])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])  # "Removing initializer"


class Noisy(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1))

    def forward(self, x):
        logging.warning("noisy: a library logging on the root logger")
        np.array([1e39]).astype(np.float32)  # RuntimeWarning: overflow encountered in cast
        return self.body(x)


def build():
    _onnxruntime_speaks()
    torch.manual_seed(0)
    return Noisy().eval(), (torch.randn(1, 4, 8, 8),)
