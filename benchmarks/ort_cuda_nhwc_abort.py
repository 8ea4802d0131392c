"""Which graphs does ONNX Runtime's CUDA EP abort on under `prefer_nhwc=1` ("terminate called without an active
exception", onnxruntime-gpu 1.31.1 on the H100)? Each case in a process of its own. Usage: python THIS OUTDIR"""

import subprocess
import sys
from pathlib import Path

CHILD = r"""
import sys, numpy as np, onnx, onnxruntime as ort, torch
from cp_debug.precision.fp16 import convert_to_fp16
path, half, nhwc = sys.argv[1], sys.argv[2] == "1", sys.argv[3]
m = onnx.load(path)
if half:
    m = convert_to_fp16(m)
opts = {"device_id": "0", "cudnn_conv_algo_search": "HEURISTIC", "prefer_nhwc": nhwc}
s = ort.InferenceSession(m.SerializeToString(), providers=[("CUDAExecutionProvider", opts)])
feed = dict(np.load(sys.argv[4]))
s.run(None, feed)
print("ran")
"""


class Encoder(__import__("torch").nn.Module):  # the pillar encoder's shape: Linear -> BN1d on [N, C, P] -> max
    def __init__(self, conv: bool, bn: bool):
        import torch

        super().__init__()
        self.lin = torch.nn.Linear(10, 16, bias=False)
        self.bn = torch.nn.BatchNorm1d(16) if bn else torch.nn.Identity()
        self.conv = torch.nn.Conv2d(16, 8, 3, padding=1) if conv else None

    def forward(self, x):  # x [N, P, 10]
        y = self.bn(self.lin(x).permute(0, 2, 1)).permute(0, 2, 1).relu().max(dim=1)[0]  # [N, 16]
        if self.conv is None:
            return y
        return self.conv(y[:64].t().reshape(1, 16, 8, 8))


def main() -> None:
    import numpy as np
    import torch

    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    x = np.random.RandomState(0).randn(64, 20, 10).astype(np.float32)
    np.savez(out / "x.npz", x=x)
    cases = {}
    for conv in (False, True):
        for bn in (False, True):
            name = f"conv{int(conv)}_bn{int(bn)}"
            torch.onnx.export(Encoder(conv, bn).eval(), (torch.from_numpy(x),), str(out / f"{name}.onnx"),
                              input_names=["x"], output_names=["y"], dynamo=False, opset_version=17,
                              do_constant_folding=False)
            cases[name] = (out / f"{name}.onnx", out / "x.npz")
    tf = Path(sys.argv[2]) if len(sys.argv) > 2 else None
    if tf is not None:
        cases["transfusion"] = (tf / "transfusion.onnx", tf / "feed.npz")
    for name, (path, feed) in cases.items():
        for half in ("0", "1"):
            for nhwc in ("0", "1"):
                p = subprocess.run([sys.executable, "-c", CHILD, str(path), half, nhwc, str(feed)],
                                   capture_output=True, text=True)
                print(f"{name:12} fp16={half} prefer_nhwc={nhwc}: exit {p.returncode}")


if __name__ == "__main__":
    main()
