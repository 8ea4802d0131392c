"""cp_debug's TransFusion-L against a reference file AWML's own code wrote (benchmarks/awml_transfusion_reference.py,
in the venv of benchmarks/awml_env.sh): our model is built from the file's config, loads its state dict strictly,
runs its voxels, and every output (AWML's names), the proposals and the decoded boxes are compared.

    python benchmarks/awml_transfusion_compare.py /work/awml-ref/awml_reference_t4base_768.npz

The test (tests/models/transfusion/test_tf_awml_reference.py) does this for the tiny file in tests/data; this
script is for the real T4 config's file (250 MB, not in git). Proposals are compared as sets as well as in order:
on the real config neighbouring top-500 scores can lie 2.4e-7 apart (the reference's README)."""

from __future__ import annotations

import json
import sys

import numpy as np
import torch

from cp_debug.models.transfusion.bbox_coder import predict
from cp_debug.models.transfusion.config import HEAD_OUTPUTS
from cp_debug.models.transfusion.config_file import config_from_dict
from cp_debug.models.transfusion.model import TransFusion


def main(path: str) -> int:
    with np.load(path, allow_pickle=False) as data:
        ref = {k: data[k] for k in data.files}
    meta = json.loads(str(ref["config_json"]))
    cfg = config_from_dict({"model": meta["model"]}, name="awml-reference")
    model = TransFusion(cfg)
    state = {k[len("state_dict/"):]: torch.from_numpy(np.array(v))
             for k, v in ref.items() if k.startswith("state_dict/")}
    model.load_state_dict(state, strict=True)
    model.eval()
    with torch.no_grad():
        out = model(*(torch.from_numpy(ref[k]) for k in ("voxels", "num_points", "coors")))
    print(f"{path}: grid {cfg.grid_size}, {len(ref['voxels'])} voxels, {cfg.num_proposals} proposals, "
          f"{len(state)} state-dict entries loaded strictly")
    worst = 0.0
    for name in HEAD_OUTPUTS:
        if name not in ref:
            continue
        a, b = out[name].numpy(), ref[name]
        if name == "query_labels":
            same = int((a == b).sum())
            print(f"  {name:22} {same} of {b.size} equal in order")
            continue
        d = float(np.abs(a.astype(np.float64) - b).max())
        worst = max(worst, d / max(1.0, float(np.abs(b).max())))
        print(f"  {name:22} shape {tuple(b.shape)}  max |ours - AWML| {d:.3g}  "
              f"(|AWML| max {float(np.abs(b).max()):.3g})")
    (dets,) = predict(out, cfg)
    if "boxes_3d" in ref:
        n = min(len(dets.boxes), len(ref["boxes_3d"]))
        db = float(np.abs(dets.boxes[:n] - ref["boxes_3d"][:n]).max()) if n else 0.0
        print(f"  boxes: {len(dets.boxes)} ours, {len(ref['boxes_3d'])} AWML's; max |Δ| {db:.3g}; labels equal "
              f"{int((dets.labels[:n] == ref['labels_3d'][:n]).sum())} of {n}")
    print(f"worst relative difference {worst:.3g}")
    return 0 if worst < 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
