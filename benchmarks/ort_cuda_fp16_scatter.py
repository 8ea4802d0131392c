"""Does ONNX Runtime's CUDA EP run TransFusion-L's one graph in FP16? (On the H100 with onnxruntime-gpu 1.31 the
bisect's ort-cuda-fp16 lane aborted: "terminate called without an active exception" in run_with_iobinding.)
Runs the exported tiny graph converted to FP16: plainly, then with each op type of a list kept in FP32, each in a
process of its own (an abort ends only that one). Usage: python benchmarks/ort_cuda_fp16_scatter.py OUTDIR"""

import subprocess
import sys
from pathlib import Path

CHILD = r"""
import sys, numpy as np, onnx, onnxruntime as ort
from cp_debug.precision.fp16 import convert_to_fp16
path, keep_op = sys.argv[1], sys.argv[2]
m = onnx.load(path)
keep = [n.name for n in m.graph.node if n.op_type == keep_op]
h = convert_to_fp16(m, keep_fp32_nodes=keep) if keep else convert_to_fp16(m)
s = ort.InferenceSession(h.SerializeToString(), providers=["CUDAExecutionProvider"])
feed = dict(np.load(sys.argv[3]))
out = s.run(None, feed)
print("ran", keep_op, len(keep), [o.shape for o in out])
"""


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "cp_debug.cli.main", "export", "--recipe", "transfusion", "--preset",
                    "transfusion-tiny", "--out", str(out)], check=True)
    import numpy as np

    from cp_debug.models.transfusion.presets import get_preset
    from cp_debug.recipes.transfusion.export import example_voxels

    v = example_voxels(get_preset("transfusion-tiny"), max_voxels=500)
    np.savez(out / "feed.npz", voxels=v[0].numpy(), num_points=v[1].numpy().astype("int32"),
             coors=v[2].numpy().astype("int32"))
    for keep in ("none", "ScatterND", "TopK", "Softmax", "LayerNormalization"):
        p = subprocess.run([sys.executable, "-c", CHILD, str(out / "transfusion.onnx"), keep, str(out / "feed.npz")],
                           capture_output=True, text=True)
        tail = (p.stdout + p.stderr).strip().splitlines()[-1:] or [""]
        print(f"keep {keep:20} exit {p.returncode}: {tail[0][:200]}")


if __name__ == "__main__":
    main()
