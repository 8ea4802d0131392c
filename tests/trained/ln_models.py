"""A small encoder whose LayerNorms a user's file writes as ops (`torch.onnx.export(..., opset_version=16)`:
ReduceMean, Sub, Pow, ReduceMean, Add, Sqrt, Div, Mul, Add), quantized by ONNX Runtime's quantize_static."""

from __future__ import annotations

import numpy as np


def encoder():
    import torch

    class Block(torch.nn.Module):
        def __init__(self, d: int):
            super().__init__()
            self.norm = torch.nn.LayerNorm(d)
            self.fc1 = torch.nn.Linear(d, 2 * d)
            self.fc2 = torch.nn.Linear(2 * d, d)

        def forward(self, x):
            return x + self.fc2(torch.relu(self.fc1(self.norm(x))))

    class Net(torch.nn.Module):
        def __init__(self, d: int = 16):
            super().__init__()
            self.embed = torch.nn.Linear(8, d)
            self.blocks = torch.nn.Sequential(Block(d), Block(d))
            self.norm = torch.nn.LayerNorm(d)
            self.head = torch.nn.Linear(d, 4)

        def forward(self, x):
            return self.head(self.norm(self.blocks(self.embed(x))))

    torch.manual_seed(0)
    net = Net().eval()
    with torch.no_grad():  # trained-like affine parameters: not the ones and zeros of a fresh LayerNorm
        for m in net.modules():
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return net, (torch.randn(1, 10, 8),)


def user_file(folder, calib: int = 4) -> None:
    """The user's deployed file in `folder`: exported at opset 16 (LayerNorm as ops), Q/DQ INT8 by quantize_static."""
    import onnx
    import torch
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    net, (x,) = encoder()
    fp32 = folder / "fp32.onnx"
    torch.onnx.export(net, (x,), str(fp32), input_names=["x"], output_names=["output0"], opset_version=16,
                      dynamo=False)
    rng = np.random.default_rng(3)
    feeds = iter([{"x": rng.standard_normal((1, 10, 8)).astype(np.float32)} for _ in range(calib)])

    class _Reader(CalibrationDataReader):
        def get_next(self):
            return next(feeds, None)

    (folder / "deploy").mkdir(exist_ok=True)
    out = folder / "deploy" / "model.onnx"
    quantize_static(str(fp32), str(out), _Reader(), quant_format=QuantFormat.QDQ)
    fp32.unlink()
    model = onnx.load(out)  # names as a simplifier leaves them: the scopes gone, structure alone maps the probes
    for k, node in enumerate(model.graph.node):
        node.name = f"{node.op_type}_{k}"
    del model.metadata_props[:]
    onnx.save(model, out)
