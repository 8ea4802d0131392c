"""The tiny TransFusion end to end: AWML's output names and shapes, the proposals (local maxima, K of them, labels
in range, their heatmap scores), decoding, determinism and speed, AWML's init and the legacy decoration."""

from __future__ import annotations

import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cp_debug.models.transfusion.bbox_coder import TransFusionBBoxCoder, predict  # noqa: E402
from cp_debug.models.transfusion.config import HEAD_OUTPUTS  # noqa: E402
from cp_debug.models.transfusion.model import build_model  # noqa: E402
from cp_debug.models.transfusion.presets import get_preset  # noqa: E402
from cp_debug.models.transfusion.transfusion_head import create_2d_grid, local_maxima  # noqa: E402
from tests.models.transfusion._tiny import tiny_inputs  # noqa: E402

CFG = get_preset("transfusion-tiny")


@pytest.fixture(scope="module")
def model():
    return build_model(CFG, seed=0)


@pytest.fixture(scope="module")
def outputs(model):
    vox = tiny_inputs()
    with torch.no_grad():
        return model(vox.voxels, vox.num_points, vox.coors)


def test_outputs_have_awmls_names_and_shapes(outputs):
    k, c = CFG.num_proposals, CFG.num_classes
    assert tuple(outputs) == HEAD_OUTPUTS
    shapes = {name: tuple(t.shape) for name, t in outputs.items()}
    assert shapes == {"center": (1, 2, k), "height": (1, 1, k), "dim": (1, 3, k), "rot": (1, 2, k),
                      "vel": (1, 2, k), "heatmap": (1, c, k), "query_heatmap_score": (1, c, k),
                      "dense_heatmap": (1, c, 32, 32), "query_labels": (1, k)}
    assert outputs["query_labels"].dtype == torch.int64


def test_the_proposals_are_the_top_k_local_maxima_over_classes_and_cells(outputs):
    pooled = local_maxima(outputs["dense_heatmap"].sigmoid(), CFG.nms_kernel_size).view(1, CFG.num_classes, -1)
    labels = outputs["query_labels"][0]
    assert labels.min() >= 0 and labels.max() < CFG.num_classes
    score = outputs["query_heatmap_score"][0]  # (classes, K): the pooled map at each proposal's cell
    own = score[labels, torch.arange(CFG.num_proposals)]
    assert torch.all(own > 0)  # every proposal is a local maximum of its class
    assert torch.all(own[:-1] >= own[1:])  # in descending order, as argsort gives them
    kth = torch.sort(pooled.flatten(), descending=True).values[CFG.num_proposals - 1]
    assert torch.isclose(own[-1], kth)  # and they are the K best of classes x cells
    cells = pooled.shape[-1]
    top = pooled.view(-1).argsort(descending=True)[: CFG.num_proposals]
    assert torch.equal(labels, top // cells)  # class = index // cells over the flattened (classes x cells)
    assert torch.equal(score, pooled[0][:, top % cells])
    assert len(set(top.tolist())) == CFG.num_proposals  # K distinct (class, cell) pairs


def test_local_maxima_keep_window_peaks_and_drop_the_border():
    heat = torch.zeros(1, 1, 6, 6)
    heat[0, 0, 2, 2], heat[0, 0, 2, 3], heat[0, 0, 0, 4], heat[0, 0, 4, 4] = 0.9, 0.5, 0.99, 0.7
    kept = local_maxima(heat, 3)[0, 0]
    assert kept[2, 2] == pytest.approx(0.9) and kept[4, 4] == pytest.approx(0.7)
    assert kept[2, 3] == 0 and kept[0, 4] == 0  # beaten by a neighbour; on the border the window never covers


def test_bev_positions_are_cell_centres_x_then_y():
    grid = create_2d_grid(4, 4)[0]
    assert grid.shape == (16, 2)
    assert grid[1].tolist() == [1.5, 0.5] and grid[4].tolist() == [0.5, 1.5]  # flat index row * W + col


def test_decoding_gives_boxes_inside_the_post_center_range_one_per_kept_proposal(outputs):
    (dets,) = predict(outputs, CFG)
    assert dets.boxes.shape[1] == 9 and len(dets) <= CFG.num_proposals and len(dets) > 0
    lo, hi = np.array(CFG.post_center_range[:3]), np.array(CFG.post_center_range[3:])
    assert np.all(dets.boxes[:, :3] >= lo) and np.all(dets.boxes[:, :3] <= hi)
    assert np.all(dets.boxes[:, 3:6] > 0) and np.all(np.abs(dets.boxes[:, 6]) <= np.pi)
    assert set(dets.labels.tolist()) <= set(range(CFG.num_classes))
    # the label is each proposal's query class; the score sigmoid(heatmap) * its pooled heatmap score
    labels = outputs["query_labels"][0].numpy()
    assert dets.labels.tolist() == labels[: len(dets)].tolist() or len(dets) < CFG.num_proposals
    assert np.all(dets.scores > 0) and np.all(dets.scores < 1)


def test_decoding_does_not_write_into_the_outputs_and_follows_the_coder(outputs):
    before = {k: v.clone() for k, v in outputs.items()}
    predict(outputs, CFG)
    assert all(torch.equal(before[k], outputs[k]) for k in outputs)
    coder = TransFusionBBoxCoder((-25.6, -25.6), 4, (0.4, 0.4), (-200, -200, -10, 200, 200, 10), 0.0)
    heat = torch.tensor([[[0.2], [0.7]]])
    centre, height = torch.tensor([[[10.0], [20.0]]]), torch.tensor([[[1.0]]])
    dim, rot = torch.log(torch.tensor([[[4.0], [2.0], [1.5]]])), torch.tensor([[[1.0], [0.0]]])
    (box,) = coder.decode(heat, rot, dim, centre, height, torch.zeros(1, 2, 1), filter=True)
    assert box["bboxes"][0].tolist() == pytest.approx([10 * 1.6 - 25.6, 20 * 1.6 - 25.6, 1 - 0.75, 4, 2, 1.5,
                                                      np.pi / 2, 0, 0], abs=1e-5)
    assert box["labels"].tolist() == [1] and box["scores"].tolist() == pytest.approx([0.7])


def test_the_same_seed_gives_the_same_model_and_outputs(outputs):
    again = build_model(CFG, seed=0)
    vox = tiny_inputs()
    with torch.no_grad():
        out = again(vox.voxels, vox.num_points, vox.coors)
    assert all(torch.equal(out[k], outputs[k]) for k in outputs)
    key = "pts_bbox_head.shared_conv.weight"
    assert not torch.equal(build_model(CFG, seed=1).state_dict()[key], again.state_dict()[key])


def test_a_tiny_forward_runs_well_under_a_second_on_the_cpu(model):
    vox = tiny_inputs()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one core: on a shared machine more threads only wait for each other
    try:
        with torch.no_grad():
            model(vox.voxels, vox.num_points, vox.coors)
            times = []
            for _ in range(3):  # the best of three
                start = time.perf_counter()
                model(vox.voxels, vox.num_points, vox.coors)
                times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    assert min(times) < 1.0


def test_init_is_awmls_no_minus_2_19_bias_and_xavier_decoder(model):
    sd = model.state_dict()
    bias = sd["pts_bbox_head.prediction_heads.0.heatmap.1.bias"]
    assert not torch.allclose(bias, torch.full_like(bias, -2.19))  # SeparateHead.init_weights never runs in AWML
    assert float(bias.abs().max()) <= 1 / np.sqrt(64)  # PyTorch's default bound 1/sqrt(fan_in)
    w = sd["pts_bbox_head.decoder.0.ffn.layers.0.0.weight"]
    assert float(w.abs().max()) <= np.sqrt(6 / (128 + 256)) + 1e-6  # Xavier uniform
    assert torch.count_nonzero(sd["pts_bbox_head.decoder.0.self_attn.attn.in_proj_bias"]) == 0
    assert all(m.momentum == pytest.approx(CFG.bn_momentum) for m in model.pts_bbox_head.modules()
               if isinstance(m, torch.nn.modules.batchnorm._BatchNorm))


def test_the_legacy_decoration_overwrites_xyz_with_the_centre_offsets_and_not_the_callers_voxels(model):
    vox = tiny_inputs()
    voxels = vox.voxels.clone()
    feats = model.pts_voxel_encoder.get_input_features(vox.voxels, vox.num_points, vox.coors)
    assert torch.equal(vox.voxels, voxels)
    assert feats.shape[-1] == 11
    assert torch.equal(feats[..., :3], feats[..., 8:11])  # mmdet3d legacy=True: raw xyz replaced by the offsets
    assert torch.equal(feats[..., 3:5], voxels[..., 3:5] * (feats[..., 3:5] != 0))


def test_the_head_runs_in_half_on_features_in_half(model):
    """torch-cuda-fp16 runs the model converted with .half(): the BEV positions (a plain attribute, as AWML's, that
    .half() does not reach) follow the features' dtype, or the position embedding's half conv met float32 input."""
    import copy

    head = copy.deepcopy(model.pts_bbox_head).half()
    cells = CFG.head_size[0] * CFG.head_size[1]
    feat = torch.randn(1, CFG.hidden_channel, CFG.head_size[1], CFG.head_size[0], dtype=torch.float16)
    top = torch.arange(CFG.num_proposals)[None] * (cells // CFG.num_proposals)
    try:
        with torch.no_grad():
            out = head.decode_proposals(feat, top)
    except RuntimeError as e:
        if "not implemented for 'Half'" in str(e):  # a CPU build without half kernels for one of the ops
            pytest.skip(str(e))
        raise
    assert out["center"].dtype == torch.float16
