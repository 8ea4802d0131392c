"""Which exposed tensor of TransFusion-L's FP16 one graph ends ONNX Runtime's CUDA run with std::terminate? Each
try in a process of its own (an abort ends only it): the graph plain (session.run / IO binding), with every
intermediate output exposed, then bisected over the exposed outputs. Usage: python THIS OUTDIR"""

import subprocess
import sys
from pathlib import Path

CHILD = r"""
import sys, json, numpy as np, onnx, onnxruntime as ort, torch
from cp_debug.precision.fp16 import convert_to_fp16
from cp_debug.graph.model import expose_outputs
from cp_debug.backends.ort.ort_binding import run_bound
path, feed_path, mode, names = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
m = convert_to_fp16(onnx.load(path))
if names:
    m = expose_outputs(m, names)
s = ort.InferenceSession(m.SerializeToString(), providers=["CUDAExecutionProvider"])
feed = dict(np.load(feed_path))
outs = [o.name for o in s.get_outputs()]
if mode == "run":
    got = s.run(None, feed)
else:
    inputs = {i.name: (None, i.shape) for i in s.get_inputs()}
    got = run_bound(s, {k: torch.from_numpy(v).cuda() for k, v in feed.items()}, inputs, outs, "cuda")
print("ran", mode, len(outs))
"""


def child(path, feed, mode, names) -> int:
    import json

    p = subprocess.run([sys.executable, "-c", CHILD, str(path), str(feed), mode, json.dumps(names)],
                       capture_output=True, text=True)
    return p.returncode, ((p.stdout + p.stderr).strip().splitlines() or [""])[-1][:200]


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "cp_debug.cli.main", "export", "--recipe", "transfusion", "--preset",
                    "transfusion-tiny", "--random-weights", "--out", str(out)], check=True, capture_output=True)
    import numpy as np
    import onnx

    from cp_debug.models.transfusion.presets import get_preset
    from cp_debug.recipes.transfusion.export import example_voxels

    v = example_voxels(get_preset("transfusion-tiny"), max_voxels=500)
    feed = out / "feed.npz"
    np.savez(feed, voxels=v[0].numpy(), num_points=v[1].numpy().astype("int32"), coors=v[2].numpy().astype("int32"))
    path = out / "transfusion.onnx"
    m = onnx.load(str(path))
    inits = {i.name for i in m.graph.initializer}
    names = [t for n in m.graph.node if n.op_type not in ("Constant",) for t in n.output if t and t not in inits]
    for mode in ("run", "bound"):
        print(mode, "plain:", *child(path, feed, mode, []))
        print(mode, f"all {len(names)} exposed:", *child(path, feed, mode, names))
    lo, hi = 0, len(names)  # the shortest prefix of exposed outputs whose bound run aborts
    if child(path, feed, "bound", names)[0] == 0:
        return
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if child(path, feed, "bound", names[:mid])[0] != 0:
            hi = mid
        else:
            lo = mid
    bad = names[hi - 1]
    node = next(n for n in m.graph.node if bad in n.output)
    print("first aborting exposed output:", bad, "of", node.op_type, node.name)
    print("alone:", *child(path, feed, "bound", [bad]), "| run:", *child(path, feed, "run", [bad]))


if __name__ == "__main__":
    main()
