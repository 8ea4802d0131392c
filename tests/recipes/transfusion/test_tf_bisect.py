"""`cpdebug bisect --recipe transfusion`: probes from the pillars through the decoder to each prediction head, and a
flipped top-K proposal reported as a flip, not as a fault of the decoder that runs on it."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def subject():
    from cp_debug.recipes.transfusion.subject import transfusion_subject

    return transfusion_subject("transfusion-tiny", max_voxels=300)


def _run(subject, backends="torch,torch"):
    from cp_debug.backends.spec import NOISE_CHECK, parse_backends
    from cp_debug.bisect.engine import BisectEngine, BisectOptions

    pairs = parse_backends(backends, rule=NOISE_CHECK)
    engine = BisectEngine(subject, pairs[0], pairs[1:], BisectOptions(noise_floor=False, local=False))
    try:
        return engine.run()
    finally:
        engine.close()


@pytest.fixture(scope="module")
def same(subject):
    """torch against torch."""
    return _run(subject)


def test_probes_reach_every_part(same):
    report = same
    names = [r.probe for r in report.candidates[0].results]
    for want in ("pts_voxel_encoder.pfn_layers.0", "pts_middle_encoder", "pts_backbone.blocks.2",
                 "pts_neck.deblocks.0", "pts_bbox_head.shared_conv", "pts_bbox_head.heatmap_head", "top_proposals",
                 "query_heatmap_score", "pts_bbox_head.class_encoding", "pts_bbox_head.decoder.0.self_attn",
                 "pts_bbox_head.decoder.0.cross_attn", "pts_bbox_head.decoder.0.ffn", "pts_bbox_head.decoder.0.norms.2",
                 "pts_bbox_head.prediction_heads.0.heatmap", "pts_bbox_head.prediction_heads.0.rot", "cls_score"):
        assert want in names
    cand = report.candidates[0]
    assert cand.first_divergent is None and cand.decisions[0]["changed"] is False
    assert report.to_json()["decisions"]["torch"][0]["kind"] == "top_k"


def _planted(subject):
    """The subject with the candidate's dense heatmap raised at the reference's (K+1)-th proposal, just above the
    K-th: one proposal flips, nothing else changes."""
    import torch

    from dataclasses import replace

    def decide(index, ref_up, cand_up):
        dense = np.array(cand_up["dense_heatmap"], dtype=np.float32)
        head = subject.stages[1].module.pts_bbox_head._head[0]
        pooled, _ = head.select_proposals(torch.as_tensor(np.asarray(ref_up["dense_heatmap"])))
        order = pooled.reshape(-1).argsort(descending=True).numpy()
        k = head.num_proposals
        flat = dense.reshape(-1)  # classes x cells in the same order as the pooled map
        flat[order[k]] = flat[order[k - 1]] + 1e-3  # the (K+1)-th local maximum passes the K-th
        return subject.decide(index, ref_up, {**cand_up, "dense_heatmap": flat.reshape(dense.shape)})

    return replace(subject, decide=decide)


def test_planted_flip_is_a_flip_not_a_decoder_fault(subject):
    report = _run(_planted(subject))
    cand = report.candidates[0]
    (decision,) = cand.decisions
    assert decision["changed"] and decision["flipped"] == 1 and decision["k"] == 40
    sides = sorted(c["side"] for c in decision["cells"])
    assert sides == ["entered", "left"]
    assert all(abs(c["margin_to_kth"]) < 0.05 for c in decision["cells"])  # both next to the K-th score
    assert "1 of 40 flipped" in decision["summary"]
    decoder = [r for r in cand.results if r.probe.startswith("pts_bbox_head.") or r.probe in
               ("center", "height", "dim", "rot", "vel", "heatmap", "cls_score")]
    assert decoder and all(r.status == "ok" for r in decoder)
    assert cand.first_divergent is None and cand.root_cause is None


def test_same_model_same_boxes(same):
    report = same
    (cand,) = report.candidates
    boxes = cand.detections
    assert boxes["reference_boxes"] > 0 and boxes["matched"] == boxes["reference_boxes"]
    assert not boxes["changed"] and boxes["summary"].startswith("no box changed")
    assert cand.decisions and cand.decisions[0]["changed"] is False  # the proposal decision stays on the report
    assert report.to_json()["detections"]["torch"]["matched"] == boxes["matched"]

