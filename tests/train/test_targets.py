"""CenterHead targets: a box's heatmap peak is 1 at its centre cell, the radius, and the decoder inverts them."""

from __future__ import annotations

import math

import numpy as np
import torch

from cp_debug.models.centerpoint.presets import get_preset
from cp_debug.models.centerpoint.decode import decode
from cp_debug.train.targets import TargetConfig, build_targets, gaussian_radius
from tests.pillars032 import TINY_032

# TINY_032: tiny's modules on +-25.6 m of 0.32 m pillars, out_size_factor 2: head cells of 0.64 m, 80 x 80
TINY = get_preset(TINY_032)
BOXES = np.array([
    [3.3, -5.1, 0.0, 4.5, 1.9, 1.6, 0.4, 5.0, 1.0],  # car
    [-10.0, 8.0, 0.0, 0.7, 0.6, 1.75, -2.0, 0.5, -0.5],  # pedestrian
    [12.0, 12.0, 0.0, 11.5, 2.9, 3.3, math.pi / 2, 0.0, 8.0],  # bus
], dtype=np.float32)
LABELS = np.array([0, 4, 2])


def _cell(box):
    return int((box[0] + 25.6) / 0.64), int((box[1] + 25.6) / 0.64)


def test_heatmap_peak_is_one_at_the_centre_cell():
    t = build_targets(BOXES, LABELS, TINY)
    assert t.heatmap.shape == (5, 80, 80) and t.mask.sum() == 3
    for k, (box, label) in enumerate(zip(BOXES, LABELS)):
        ix, iy = _cell(box)
        assert t.heatmap[label, iy, ix] == 1.0
        assert np.unravel_index(t.heatmap[label].argmax(), (80, 80)) == (iy, ix)
        assert t.ind[k] == iy * 80 + ix
        np.testing.assert_allclose(t.anno_box[k, :2], [(box[0] + 25.6) / 0.64 - ix, (box[1] + 25.6) / 0.64 - iy],
                                   atol=1e-5)
        np.testing.assert_allclose(t.anno_box[k, 2:],
                                   [box[5] / 2, *np.log(box[3:6]), math.sin(box[6]), math.cos(box[6]),
                                                        box[7], box[8]], atol=1e-5)
    assert (t.heatmap == 1.0).sum() == 3
    assert t.heatmap[1].max() == 0 and t.heatmap[3].max() == 0  # no truck, no bicycle


def test_radius_is_at_least_min_radius_and_grows_with_size():
    t = build_targets(BOXES, LABELS, TINY)
    for box, label in zip(BOXES, LABELS):
        ix, iy = _cell(box)
        row = t.heatmap[label, iy]
        radius = max(TargetConfig().min_radius, int(gaussian_radius((box[4] / 0.64, box[3] / 0.64), 0.1)))
        assert radius >= 2
        assert row[ix + radius] > 0 and row[ix + radius + 1] == 0
    ped_r = int(gaussian_radius((0.6 / 0.64, 0.7 / 0.64), 0.1))
    bus_r = int(gaussian_radius((2.9 / 0.64, 11.5 / 0.64), 0.1))
    assert ped_r < 2 <= bus_r


def test_decoder_inverts_the_targets():
    """Head maps built from the targets decode to the GT boxes (z bottom, l/w/h, yaw, velocity)."""
    t = build_targets(BOXES, LABELS, TINY)
    logit = np.log(np.clip(t.heatmap, 1e-6, 1 - 1e-6) / (1 - np.clip(t.heatmap, 1e-6, 1 - 1e-6)))
    maps = {"heatmap": torch.tensor(logit[None])}
    for name, lo, hi in (("reg", 0, 2), ("height", 2, 3), ("dim", 3, 6), ("rot", 6, 8), ("vel", 8, 10)):
        m = np.zeros((1, hi - lo, 80 * 80), np.float32)
        m[0, :, t.ind[t.mask == 1]] = t.anno_box[t.mask == 1, lo:hi]
        maps[name] = torch.tensor(m.reshape(1, hi - lo, 80, 80))
    det = decode(maps, TINY, score_threshold=0.9)  # the peaks only: Gaussian neighbours score below
    assert len(det) == 3
    order = np.argsort(det.boxes[:, 0])
    want = BOXES[np.argsort(BOXES[:, 0])]
    np.testing.assert_allclose(det.boxes[order], want, atol=1e-4)
    assert sorted(det.labels.tolist()) == sorted(LABELS.tolist())
