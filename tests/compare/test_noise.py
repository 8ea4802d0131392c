"""The noise model bounds what real FP16 / BF16 / INT8 rounding does, and does not bound a planted fault."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cp_debug.compare import noise
from cp_debug.compare.diff import TensorDiff
from cp_debug.compare.noise import Outcome
from cp_debug.compare.weight_only import own_roundings
from cp_debug.errors import ExitCode


def _tensors():
    rng = np.random.default_rng(0)
    yield "normal", rng.standard_normal((4, 32, 64, 64)).astype(np.float32)
    yield "relu", np.maximum(rng.standard_normal((4, 32, 64, 64)), 0).astype(np.float32) * 30
    yield "lognormal", rng.lognormal(0, 2, (1 << 18,)).astype(np.float32)
    yield "tiny", (rng.standard_normal((1 << 16,)) * 1e-3).astype(np.float32)


def _bf16(x: np.ndarray) -> np.ndarray:
    return torch.from_numpy(x).to(torch.bfloat16).float().numpy()


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_one_rounding_stays_within_one_unit_roundoff(precision):
    """A single rounding to the format brings at most u in relative RMS error: the unit the budget scales."""
    u = noise.unit_roundoff(precision)
    for name, x in _tensors():
        y = x.astype(np.float16).astype(np.float32) if precision == "fp16" else _bf16(x)
        d = TensorDiff.from_arrays(name, x, y)
        assert 0 < d.rel_rmse <= u, (name, d.rel_rmse / u)
        j = noise.judge(d, precision)
        assert j.outcome is Outcome.WITHIN_PRECISION and j.noise_ratio <= 1 / noise.GROWTH


def _conv_chain(x: torch.Tensor, layers: int, store) -> torch.Tensor:
    """He-initialised 3×3 convs with ReLU; `store` rounds weights and every activation as a GPU stores them."""
    g = torch.Generator().manual_seed(0)
    for _ in range(layers):
        w = torch.randn(16, 16, 3, 3, generator=g) * (2.0 / (16 * 9)) ** 0.5
        x = store(torch.relu(torch.nn.functional.conv2d(store(x), store(w), padding=1)))
    return x


@pytest.mark.parametrize("precision,dtype", [("fp16", torch.float16), ("bf16", torch.bfloat16)])
def test_real_conv_outputs_in_half_storage_are_within_precision(precision, dtype):
    """Twelve conv layers whose weights and activations are stored in the format (float32 arithmetic, as GPU
    kernels accumulate): every layer's output within the budget, and far below it."""
    x = torch.randn(1, 16, 48, 48, generator=torch.Generator().manual_seed(1))
    ref = _conv_chain(x, 12, lambda t: t)
    half = _conv_chain(x, 12, lambda t: t.to(dtype).float())
    d = TensorDiff.from_arrays("out", ref.numpy(), half.numpy())
    j = noise.judge(d, precision)
    assert j.outcome is Outcome.WITHIN_PRECISION and 0 < j.noise_ratio < 0.5, j


def test_int8_rounding_at_its_amax_is_within_and_saturation_is_not():
    x = np.maximum(np.random.default_rng(2).standard_normal((8, 64, 32, 32)), 0).astype(np.float32)
    amax = float(np.abs(x).max())

    def fake_quant(v, a):
        step = a / noise.INT8_LEVELS
        return np.clip(np.round(v / step), -127, 127).astype(np.float32) * step

    ok = noise.judge(TensorDiff.from_arrays("q", x, fake_quant(x, amax)), "int8", amax)
    assert ok.outcome is Outcome.WITHIN_PRECISION and ok.noise_ratio < 1 / 8
    clipped = noise.judge(TensorDiff.from_arrays("q", x, fake_quant(x, 0.2 * amax)), "int8", 0.2 * amax)
    assert clipped.outcome is Outcome.DEGRADED and clipped.noise_ratio > 5


@pytest.mark.parametrize("fault", ["saturate", "swap_channels", "scale", "offset"])
def test_planted_faults_are_beyond_fp16s_budget(fault):
    x = np.maximum(np.random.default_rng(3).standard_normal((1, 32, 64, 64)), 0).astype(np.float32)
    y = x.astype(np.float16).astype(np.float32)
    if fault == "saturate":  # the sweep's planted ReLU saturating at 20 % of its max
        y = np.minimum(y, 0.2 * y.max())
    elif fault == "swap_channels":
        y = y[:, [1, 0, *range(2, 32)]]
    elif fault == "scale":  # one channel's BN folded twice
        y = y.copy()
        y[:, 5] *= 1.5
    else:  # a bias of one channel added twice (0.05 would be 1.5 % rel. RMS: FP16's own noise at a head)
        y = y + 0.5 * (np.arange(32) == 7)[None, :, None, None]
    j = noise.judge(TensorDiff.from_arrays(fault, x, y), "fp16")
    assert j.beyond and j.noise_ratio > 1, j


def test_nan_overflow_and_shape_are_diverged():
    x = np.ones((4, 4), np.float32)
    y = x.copy()
    y[0, 0] = np.inf
    assert noise.judge(TensorDiff.from_arrays("inf", x, y), "fp16").outcome is Outcome.DIVERGED
    big = x * 7e4  # beyond FP16's range but finite: a node kept in FP32 (fix), judged as any other value
    assert noise.judge(TensorDiff.from_arrays("range", big, big), "fp16").outcome is Outcome.WITHIN_PRECISION
    assert noise.judge(TensorDiff.from_arrays("shape", x, x.T[:2]), "fp16").outcome is Outcome.DIVERGED


def test_the_reference_noise_floor_widens_the_budget():
    x = np.random.default_rng(4).standard_normal(10000).astype(np.float32)
    d = TensorDiff.from_arrays("x", x, x * (1 + 1e-4))
    assert noise.judge(d, "fp32").beyond
    assert not noise.judge(d, "fp32", floor=1e-4).beyond


def test_local_fault_needs_both_the_budget_and_standing_out():
    assert not noise.local_fault(0.5, [0.01, 0.01, 0.01])  # within its precision
    assert noise.local_fault(2.0, [0.1, 0.2, 0.3])  # beyond, and far beyond its siblings
    assert not noise.local_fault(2.0, [1.5, 1.8, 2.2])  # beyond, but every sibling is too: uniform
    assert not noise.local_fault(2.0, [0.1])  # too few siblings to say
    assert noise.local_fault(noise.FAR, [5.0, 6.0, 7.0])  # FAR beyond the budget: a fault whatever the siblings
    assert noise.local_fault(math.inf, [])
    # a segment holding measured layers that show none of its error (issue 108: ONNX Runtime fusing across them):
    # only FAR beyond, whatever the run's other own errors (features.17's 4.7× against a median of 0.1)
    assert not noise.local_fault(4.7, [0.1, 0.1, 0.2], layer=False)
    assert noise.local_fault(noise.FAR, [0.1, 0.1, 0.2], layer=False)


def test_int8_rounding_carried_from_a_coarser_unit_is_judged_by_the_budget_it_was_made_at():
    """Ten logits (amax/rms ≈ 2: a fine unit) reading a ReLU6 map's rounding (a coarse one) within its own budget:
    INT8's noise passed on; a gain beyond DOMINANCE (an index, a decision) or a NaN is not (bisect/stages/record.carry
    asks besides that the source be within its own budget and the probe's own segment within its)."""
    own = noise.Judgement(Outcome.DEGRADED, 0.06, 1.8, "")
    source = noise.Judgement(Outcome.WITHIN_PRECISION, 0.19, 0.43, "")
    j = noise.carried(own, 0.108, 1.32, source, "features.18", "int8")
    assert j.outcome is Outcome.WITHIN_PRECISION and j.carried_from == "features.18"
    assert j.expected_rel_rmse == pytest.approx(1.32 * 0.19) and j.noise_ratio == pytest.approx(0.108 / (1.32 * 0.19))
    assert "carried from features.18" in j.reason
    assert noise.carried(own, 0.108, noise.DOMINANCE * 1.01, source, "s", "int8") is own  # error made here
    broken = noise.Judgement(Outcome.DIVERGED, 0.06, math.inf, "NaN")
    assert noise.carried(broken, math.inf, 1.0, source, "s", "int8") is broken  # NaN is never carried rounding
    assert noise.carried(own, 0.108, 0.1, source, "s", "int8") is own  # a budget carried smaller changes nothing


def test_boxes_at_the_threshold_are_explained_and_others_are_not():
    kw = dict(max_centre_shift=1e-3, max_score_change=1e-3, max_yaw_change=1e-2, cell_m=0.64)
    b = noise.GROWTH * noise.unit_roundoff("fp16")
    at = noise.judge_boxes("fp16", lost_scores=[0.1 + b / 2], added_scores=[0.1 - b / 2], cuts=(0.1,), **kw)
    assert at.outcome is Outcome.WITHIN_PRECISION and at.at_threshold == 2 and at.changed == 2
    far = noise.judge_boxes("fp16", lost_scores=[0.8], added_scores=[], cuts=(0.1,), **kw)
    assert far.outcome is Outcome.DEGRADED and far.beyond == 1
    capped = noise.judge_boxes("fp16", lost_scores=[0.9912], added_scores=[0.9913],
                               cuts=noise.score_cuts(0.1, 3, [0.999, 0.995, 0.9913], [0.999, 0.995, 0.99]), **kw)
    assert capped.outcome is Outcome.WITHIN_PRECISION  # the box cap's cut, not the threshold, decided
    moved = noise.judge_boxes("fp16", lost_scores=[], added_scores=[], cuts=(0.1,),
                              **{**kw, "max_centre_shift": 0.5, "max_score_change": 0.05})
    assert moved.outcome is Outcome.DEGRADED and moved.matched_beyond
    # the H100 demo's FP16 frame: a neighbouring peak, scores tied
    tied = noise.judge_boxes("fp16", lost_scores=[], added_scores=[], cuts=(0.1,),
                             **{**kw, "max_centre_shift": 0.0999, "max_score_change": 0.000929,
                                "max_yaw_change": 0.0138})
    assert tied.outcome is Outcome.WITHIN_PRECISION and "neighbouring peak" in tied.reason
    nms = noise.judge_boxes("fp16", lost_scores=[], added_scores=[], cuts=(0.1,),
                            **{**kw, "max_centre_shift": 0.97, "max_yaw_change": 1.4})
    assert nms.outcome is Outcome.WITHIN_PRECISION and "neighbouring peak" in nms.reason
    rescored = noise.judge_boxes("fp16", lost_scores=[], added_scores=[], cuts=(0.1,),
                                 **{**kw, "max_centre_shift": 0.97, "max_score_change": 0.2})
    assert rescored.outcome is Outcome.DEGRADED


def test_outcomes_map_to_the_exit_codes():
    assert [o.exit_code for o in Outcome] == [ExitCode.OK, ExitCode.DEGRADED, ExitCode.DIVERGED, ExitCode.BACKEND,
                                              ExitCode.INCONCLUSIVE]
    # inconclusive ranks below a verdict that is one: a run's exit is still its worst candidate's
    assert noise.worst([Outcome.INCONCLUSIVE, Outcome.WITHIN_PRECISION]) is Outcome.INCONCLUSIVE
    assert noise.worst([Outcome.INCONCLUSIVE, Outcome.DEGRADED]) is Outcome.DEGRADED
    assert noise.worst([Outcome.DEGRADED, Outcome.WITHIN_PRECISION]) is Outcome.DEGRADED
    assert noise.worst([]) is Outcome.WITHIN_PRECISION
    assert Outcome.WITHIN_PRECISION.words == "within precision"


def test_fp32_centres_move_by_float32s_rounding_of_their_coordinate():
    """Boxes are decoded in float32 on both sides: a centre at 50 m moves by float32 ulps (3.8e-6 m each) whatever the
    candidate's precision. The plain demo (torch vs ort FP32) moved one by 7.6e-6 m, within that; 1 mm is not."""
    ulp_at_50m = float(np.spacing(np.float32(50.0)))
    kw = dict(lost_scores=[], added_scores=[], cuts=(0.1,), max_score_change=0.0, max_yaw_change=0.0, cell_m=0.64,
              extent_m=51.2)
    assert noise.judge_boxes("fp32", max_centre_shift=2 * ulp_at_50m, **kw).outcome is noise.Outcome.WITHIN_PRECISION
    assert noise.judge_boxes("fp32", max_centre_shift=1e-3, **kw).outcome is noise.Outcome.DEGRADED


def test_fp32_against_fp32_allows_another_summation_order_but_not_a_fault():
    """Two FP32 implementations differ by their order of summation: a 2304-long dot product (3×3 conv, 256 channels)
    summed term by term in float32 moves from BLAS's blocked sum by ~u·sqrt(K). Measured on an H100, awml-base
    ort-cuda vs torch-cuda reached 203 u of relative RMS through the network; a planted 1e-3 relative fault is far
    beyond the budget."""
    rng = np.random.default_rng(0)
    w, x = rng.standard_normal((16, 2304)).astype(np.float32), rng.standard_normal((2304, 256)).astype(np.float32)
    blocked = w @ x
    serial = np.zeros_like(blocked)
    for k in range(w.shape[1]):  # one term at a time, rounded to float32 after each addition
        serial += w[:, k:k + 1] * x[k]
    rel = float(np.sqrt(np.mean((blocked - serial).astype(np.float64) ** 2) / np.mean(blocked.astype(np.float64) ** 2)))
    assert rel > 4 * noise.unit_roundoff("fp32")  # the two orders really differ
    assert rel < noise.budget("fp32") / 4
    assert 203 * noise.unit_roundoff("fp32") < noise.budget("fp32")
    assert 1e-3 > 10 * noise.budget("fp32")


def test_a_turn_is_weighed_by_how_well_the_reference_defines_the_yaw():
    """The trained demo's scene_1000005 (issue 46): a pedestrian's |(sin, cos)| is 0.0023 where the rot map's RMS is
    1.81, so FP16's rot noise (0.031 × 1.81) turns it any way; a car's 0.84 keeps the fixed 8 × budget = 0.25 rad."""
    b = noise.GROWTH * noise.unit_roundoff("fp16")
    ill = noise.YawTurn(0.30, 0.0023, 1.81, "pedestrian", 18.0, 40.0)
    well = noise.YawTurn(0.30, 0.84, 1.81, "car", -6.0, -30.4)
    assert well.explained(b) == pytest.approx(noise.YAW_FACTOR * b) and ill.explained(b) > math.pi
    kw = dict(lost_scores=[], added_scores=[], cuts=(0.1,), max_centre_shift=1e-3, max_score_change=1e-3,
              max_yaw_change=0.30, cell_m=0.64)
    named = noise.judge_boxes("fp16", yaw_turns=(ill,), **kw)
    assert named.outcome is Outcome.WITHIN_PRECISION and named.sensitive == (ill,)
    assert "pedestrian at (18.0, 40.0) m turned 0.3 rad" in named.reason and "0.0023" in named.reason
    assert named.to_json()["sensitive_boxes"][0]["rot_norm"] == 0.0023
    turned = noise.judge_boxes("fp16", yaw_turns=(well,), **kw)
    assert turned.outcome is Outcome.DEGRADED and "car at (-6.0, -30.4) m" in turned.reason
    assert noise.judge_boxes("fp16", **kw).outcome is Outcome.DEGRADED  # conditioning unknown: the fixed limit
    # the turns a judgement needs: the largest and the least explained, whatever the precision
    picked = noise.yaw_turns_of([0.30, 0.05, 0.01], [0.0023, 0.84, 0.9], 1.81, ["p", "c", "b"],
                                [(0, 0), (1, 1), (2, 2)])
    assert [t.label for t in picked] == ["p", "c"]
    assert noise.YawTurn.from_json(ill.to_json()) == ill


def test_a_centre_the_graph_itself_computes_moves_by_one_rounding_of_its_coordinate():
    """TransFusion-L adds each query's cell position in the graph: on the H100 the AWML T4 grid (range ±92.16 m,
    0.96 m cells) under ort-cuda-fp16 moved a matched centre 0.0759 m while every probe was within 0.13× FP16's
    rounding — float16 holds a coordinate of 150 cells to 0.0625 of a cell. One rounding of the span explains it; a
    graph whose coordinates are made in float32 after it (span 0) does not, nor does INT8 (the add is in float)."""
    kw = dict(lost_scores=[], added_scores=[], cuts=(0.1,), max_score_change=4e-4, max_yaw_change=0.0, cell_m=0.96,
              extent_m=92.16, max_centre_shift=0.0759)
    assert noise.judge_boxes("fp16", **kw).outcome is Outcome.DEGRADED
    assert noise.judge_boxes("fp16", graph_span_m=184.32, **kw).outcome is Outcome.WITHIN_PRECISION
    int8 = {**kw, "max_centre_shift": 0.2 * noise.unit_roundoff("int8") * 0.96}
    assert noise.judge_boxes("int8", graph_span_m=184.32, **int8) == noise.judge_boxes("int8", **int8)
    bound = noise.unit_roundoff("fp16") * 184.32
    assert 0.0625 * 0.96 < bound < 0.1  # float16's half spacing at 128-256 cells, in metres, is within it


def test_a_weight_only_segment_is_carried_by_its_own_roundings_only():
    """A MatMulNBits segment's own error of one or two roundings (Gemma 2's builder INT4 file: 0.8-1.1 units; two in
    series √2) is carried by depth; a massive channel's INT8 activation block (the corpus's lm_head: 2.8 units) is
    not."""
    unit = 0.0863
    assert own_roundings(0.093, "int4w-a8", unit) and own_roundings(0.121, "int4w-a8", unit)
    assert not own_roundings(2.8 * unit, "int4w-a8", unit)
    assert not own_roundings(float("nan"), "int4w", None)
    assert own_roundings(0.09, "int4w", None)  # the nominal unit where the file's own is not read
