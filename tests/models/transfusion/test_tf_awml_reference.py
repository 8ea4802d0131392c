"""cp_debug's TransFusion against AWML's own: the reference file holds AWML's state dict, its inputs and its outputs
(written by benchmarks/awml_transfusion_reference.py with AWML's code on mmdet3d 1.4); our model loads that state
dict strictly and must give every output (AWML's names) within 1e-5, the same proposals, and the same boxes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cp_debug.models.transfusion.bbox_coder import predict  # noqa: E402
from cp_debug.models.transfusion.config import HEAD_OUTPUTS  # noqa: E402
from cp_debug.models.transfusion.config_file import config_from_dict  # noqa: E402
from cp_debug.models.transfusion.model import TransFusion  # noqa: E402

REFERENCE = Path(__file__).parents[2] / "data" / "transfusion" / "awml_reference_tiny.npz"
pytestmark = pytest.mark.skipif(
    not REFERENCE.is_file(),
    reason=f"{REFERENCE.name} is not there yet: benchmarks/awml_transfusion_reference.py writes it with AWML's code "
           "(--config tests/data/transfusion/awml_tiny_config.py --out tests/data/transfusion/awml_reference_tiny.npz)")


@pytest.fixture(scope="module")
def reference():
    with np.load(REFERENCE, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def ours(reference):
    meta = json.loads(str(reference["config_json"]))
    cfg = config_from_dict({"model": meta["model"]}, name="awml-reference-tiny")
    model = TransFusion(cfg)
    state = {k[len("state_dict/"):]: torch.from_numpy(np.array(v)) for k, v in reference.items()
             if k.startswith("state_dict/")}
    model.load_state_dict(state, strict=True)
    model.eval()
    with torch.no_grad():
        out = model(torch.from_numpy(reference["voxels"]), torch.from_numpy(reference["num_points"]),
                    torch.from_numpy(reference["coors"]))
    return cfg, out


def test_every_output_equals_awmls(reference, ours):
    _, out = ours
    compared = [name for name in HEAD_OUTPUTS if name in reference]
    assert "heatmap" in compared and "dense_heatmap" in compared and "query_labels" in compared
    assert torch.equal(out["query_labels"], torch.from_numpy(reference["query_labels"]).to(torch.int64))
    for name in compared:
        np.testing.assert_allclose(out[name].numpy(), reference[name], rtol=0, atol=1e-5, err_msg=name)


def test_the_decoded_boxes_equal_awmls(reference, ours):
    cfg, out = ours
    if "boxes_3d" not in reference:
        pytest.skip("the reference file holds no decoded boxes")
    (dets,) = predict(out, cfg)
    np.testing.assert_allclose(dets.boxes, reference["boxes_3d"], rtol=0, atol=1e-4)
    np.testing.assert_allclose(dets.scores, reference["scores_3d"], rtol=0, atol=1e-5)
    assert dets.labels.tolist() == reference["labels_3d"].astype(np.int64).tolist()
