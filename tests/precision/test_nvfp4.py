"""`ort-cpu-nvfp4` / `ort-cpu-mxfp8` (issue 86, items 2 and 3): NVFP4 and MXFP8 emulated in float32 ONNX, labelled so.

The rounding first, bit for bit: E2M1 against an explicit table (ModelOpt's bounds with its ties) and ml_dtypes'
float4_e2m1fn, E4M3 against torch's float8_e4m3fn casts, the two-level weight scheme against ModelOpt's formulas
written in torch, and the ONNX fake-quant subgraphs (as ONNX Runtime runs them) against the numpy reference. Then the
real CLI on a small CNN and a transformer block of our own: healthy → within the format's budget, the result labelled
"emulated — not run on hardware" in the JSON and on the terminal; a weight outlier that sets its layer's NVFP4
tensor scale → that layer named the root cause, the share of its blocks whose E4M3 scale underflows in the report;
the same for an activation outlier (its input's blocks that flush, counted over the calibration inputs).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import ml_dtypes
import numpy as np
import onnx
import pytest
import torch

from cp_debug.backends.graph_loader import PrepareGraph
from cp_debug.backends.spec import BackendSpec
from cp_debug.errors import BadInputError
from cp_debug.precision.block_formats import (E2M1_GRID, e8m0_exponent, mxfp8_qdq, nvfp4_qdq, round_e2m1,
                                              round_e4m3, tensor_scale)
from cp_debug.precision.block_quant import EMULATED
from tests.backends.test_ort_fp8 import SmallCnn
from tests.cli_run import cpdebug
from tests.zoo.models import Block

CONV3 = "/body/body.4/Conv_output_0"  # the third conv's output, as torch.onnx.export names it
MLP_IN = "/mlp/mlp.0/MatMul_output_0"  # the block's first MLP Linear


def _cnn(fault: bool) -> SmallCnn:
    """The FP8 tests' CNN. Fault: the second conv's channel 5 is dead (0 after its ReLU) and the third conv reads it
    with weights 10^5: no effect in FP32; in NVFP4 they set that weight's tensor scale, so the block of the other 16
    input channels gets an E4M3 scale below 2^-10 and flushes (half its blocks), the block they share rounds away."""
    torch.manual_seed(0)
    net = SmallCnn().eval()
    if fault:
        with torch.no_grad():
            net.body[2].weight[5].zero_()
            net.body[2].bias[5] = -1.0
            net.body[4].weight[:, 5] = 1e5
    return net


def _block(fault: str | None) -> Block:
    """A pre-norm transformer block (hand-written attention, GELU MLP). Fault "weight": feature 5 of the MLP's input
    is 0 (norm2's weight and bias there) and the first MLP Linear reads it with weights 10^5. Fault "activation": an
    outlier feature, 10^7 (norm2's weight there), that the Linear reads with weights 0 — no effect in FP32; in NVFP4
    it sets its input's tensor scale: the other features' blocks flush (an LLM's activation outliers, in small)."""
    torch.manual_seed(0)
    net = Block(32, 4).eval()
    with torch.no_grad():
        if fault == "weight":
            net.norm2.weight[5] = net.norm2.bias[5] = 0.0
            net.mlp[0].weight[:, 5] = 1e5
        elif fault == "activation":
            net.norm2.weight[5] = 1e7
            net.mlp[0].weight[:, 5] = 0.0
    return net


def _export(net: torch.nn.Module, example: torch.Tensor, path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (example,), str(path), input_names=["x"], output_names=["y"], dynamo=False,
                          opset_version=17)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("nvfp4")
    out = {}
    for fault in (False, True):
        tag = "fault" if fault else "healthy"
        out[f"cnn_{tag}"] = _export(_cnn(fault), torch.zeros(1, 3, 16, 16), folder / f"cnn_{tag}.onnx")
        out[f"block_{tag}"] = _export(_block("weight" if fault else None), torch.zeros(1, 12, 32),
                                      folder / f"block_{tag}.onnx")
    out["block_outlier"] = _export(_block("activation"), torch.zeros(1, 12, 32), folder / "block_outlier.onnx")
    return out


def _bisect(path: Path, out: Path, lane: str = "ort-cpu-nvfp4"):
    proc = cpdebug("bisect", "--onnx", path, "-b", f"ort,{lane}", "--json", out)
    return proc, json.loads(out.read_text())


# -- the rounding ------------------------------------------------------------------------------------------------
def _e2m1_table(x: np.ndarray) -> np.ndarray:
    """E2M1 by table, as ModelOpt's `_cast_fp4`: the grid's midpoints as bounds, a value on a bound going to the
    neighbour whose code is even (0.25 → 0, 0.75 → 1, 1.25 → 1, 1.75 → 2, 2.5 → 2, 3.5 → 4, 5 → 4)."""
    bounds = np.array([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0], np.float32)
    a = np.abs(x)
    code = np.searchsorted(bounds, a, side="left") + np.isin(a, bounds[[1, 3, 5]])
    return np.sign(x) * np.asarray(E2M1_GRID, np.float32)[code]


def test_e2m1_rounding_is_the_table_bit_for_bit():
    grid = np.asarray(E2M1_GRID, np.float32)
    ties = (grid[1:] + grid[:-1]) / 2
    x = np.concatenate([grid, ties, np.nextafter(ties, 0), np.nextafter(ties, 9), [6.5, 7.0, 100.0, 1e30],
                        np.random.default_rng(0).standard_normal(20000).astype(np.float32) * 3]).astype(np.float32)
    x = np.concatenate([x, -x])
    ours = round_e2m1(x)
    np.testing.assert_array_equal(ours, _e2m1_table(x))
    np.testing.assert_array_equal(ours, np.clip(x, -6, 6).astype(ml_dtypes.float4_e2m1fn).astype(np.float32))


def test_e4m3_rounding_is_torchs_cast_bit_for_bit():
    codes = np.arange(256, dtype=np.uint8).view(ml_dtypes.float8_e4m3fn).astype(np.float32)
    levels = np.unique(np.abs(codes[np.isfinite(codes)]))
    mids = (levels[1:] + levels[:-1]) / 2  # every tie of E4M3, and values either side of it
    x = np.concatenate([levels, mids, np.nextafter(mids, 0), np.nextafter(mids, 1e9), [448.0, 464.0, 1e6],
                        np.random.default_rng(1).standard_normal(20000).astype(np.float32) * 50]).astype(np.float32)
    x = np.concatenate([x, -x])
    torch_cast = torch.from_numpy(np.clip(x, -448, 448)).to(torch.float8_e4m3fn).float().numpy()
    np.testing.assert_array_equal(round_e4m3(x), torch_cast)


def test_nvfp4_weights_are_modelopts_two_level_scheme():
    """ModelOpt's NVFP4QTensor in torch: s2 = amax / (6·448); per block amax / (6·s2) cast to float8_e4m3fn (a zero
    block's scale 1); values / (q·s2) rounded by the table; dequantized as value · (q·s2). Blocks along the K axis."""
    rng = np.random.default_rng(2)
    w = (rng.standard_normal((24, 40)) * np.exp(rng.uniform(-6, 2, (24, 1)))).astype(np.float32)
    w[3, :16] = 0  # an all-zero block
    t = torch.from_numpy(np.pad(w, ((0, 0), (0, 8))))  # ModelOpt pads the last axis to a whole block with zeros
    s2 = t.abs().max().float() / (6.0 * 448.0)
    blocks = t.view(24, 3, 16)
    scale = blocks.abs().amax(-1) / (6.0 * s2)
    scale[scale == 0] = 1.0
    p = (scale.to(torch.float8_e4m3fn).float() * s2).unsqueeze(-1)
    values = torch.from_numpy(_e2m1_table((blocks / p).numpy()))
    modelopt = (values * p).reshape(24, 48)[:, :40].numpy()
    ours, flushed = nvfp4_qdq(w, axis=1)
    np.testing.assert_array_equal(ours, modelopt)
    assert flushed == 0.0 and float(tensor_scale(float(np.abs(w).max()))) == pytest.approx(float(s2))
    # a block whose amax is below amax·2^-10/448 gets an E4M3 scale of 0: the block flushes to zero
    w[5, 16:32] = float(np.abs(w).max()) * 1e-7
    ours, flushed = nvfp4_qdq(w, axis=1)
    assert not ours[5, 16:32].any() and flushed == pytest.approx(1 / (24 * 3 - 1))


def test_mxfp8_scale_is_the_power_of_two_above_amax_over_448():
    amax = np.array([448, 448.0001, 447.9999, 896, 1, 0, 3e-38, 1e38], np.float32)
    np.testing.assert_array_equal(e8m0_exponent(amax), [0, 1, 0, 1, -8, -127, -127, 118])
    w = np.random.default_rng(3).standard_normal((8, 70)).astype(np.float32)
    q = mxfp8_qdq(w, axis=1)
    scale = 2.0 ** e8m0_exponent(np.abs(np.pad(w, ((0, 0), (0, 26)))).reshape(8, 3, 32).max(-1))
    np.testing.assert_array_equal(q / np.repeat(scale, 32, axis=1)[:, :70],
                                  round_e4m3(w / np.repeat(scale, 32, axis=1)[:, :70]))


@pytest.mark.parametrize("fmt", ["nvfp4", "mxfp8"])
def test_the_onnx_fake_quant_is_the_reference_bit_for_bit(fmt):
    """The subgraphs ONNX Runtime runs (a MatMul's input blocked along its last axis, a Conv's along its channels,
    both padded to whole blocks) equal the numpy reference, and so does onnx's reference evaluator (standard ONNX
    semantics, no runtime's own); a zero block and a flushed block among them."""
    import onnxruntime as ort
    from onnx import TensorProto, helper
    from onnx.reference import ReferenceEvaluator

    rng = np.random.default_rng(4)
    w, cw = rng.standard_normal((40, 8)).astype(np.float32), rng.standard_normal((8, 20, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"]), helper.make_node("Conv", ["z", "cw"], ["c"], pads=[1] * 4)],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5, 40]),
              helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 20, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5, 8]),
         helper.make_tensor_value_info("c", TensorProto.FLOAT, [1, 8, 6, 6])],
        [onnx.numpy_helper.from_array(w, "w"), onnx.numpy_helper.from_array(cw, "cw")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)], ir_version=10)
    x = (rng.standard_normal((2, 5, 40)) * np.exp(rng.uniform(-8, 3, (2, 5, 40)))).astype(np.float32)
    x[0, 0, :16], x[0, 1, 16:32] = 0.0, 1e-9
    feed = {"x": x, "z": rng.standard_normal((1, 20, 6, 6)).astype(np.float32)}
    prepared = PrepareGraph(model, f"ort-cpu-{fmt}", f"{fmt}_emulated", extra_outputs=("x", "z"),
                            calib_feeds=[feed])()
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(prepared.model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    out = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feed)))
    if fmt == "nvfp4":
        ref = {n: nvfp4_qdq(feed[n], a, float(np.abs(feed[n]).max()))[0] for n, a in (("x", -1), ("z", 1))}
    else:
        ref = {n: mxfp8_qdq(feed[n], a) for n, a in (("x", -1), ("z", 1))}
    standard = ReferenceEvaluator(prepared.model).run([f"{n}_{fmt}_dq" for n in ("x", "z")], feed)  # onnx's own
    for name, by_onnx in zip(("x", "z"), standard):
        assert prepared.out_map[name] == f"{name}_{fmt}_dq"
        np.testing.assert_array_equal(out[prepared.out_map[name]], ref[name])
        np.testing.assert_array_equal(by_onnx, ref[name])
    weight = nvfp4_qdq(w, 0)[0] if fmt == "nvfp4" else mxfp8_qdq(w, 0)
    np.testing.assert_allclose(out["y"], ref["x"] @ weight, rtol=1e-5, atol=1e-5)
    assert prepared.transform.emulated == EMULATED and prepared.transform.block_size == (16 if fmt == "nvfp4" else 32)


def test_specs_and_budgets():
    from cp_debug.compare import noise

    nv, mx = BackendSpec.parse("ort-cpu-nvfp4"), BackendSpec.parse("ort-cuda-mxfp8")
    assert nv.calibrated and nv.emulated and mx.emulated and not mx.calibrated  # MXFP8's scales are the blocks' own
    assert not BackendSpec.parse("ort-cpu-fp8").emulated
    for text in ("torch-cpu-nvfp4", "trt-nvfp4"):
        with pytest.raises(BadInputError, match="supports"):
            BackendSpec.parse(text)
    assert noise.unit_roundoff("nvfp4") == 0.25 and noise.budget("mxfp8") == noise.budget("fp8")
    assert noise.budget("fp8") < noise.budget("nvfp4") < 1.0  # below 1: an output that lost everything is beyond it
    assert noise.ran_none_asked("nvfp4", "fp32")


# -- the lanes through the CLI -------------------------------------------------------------------------------------
@pytest.mark.parametrize("net", ["cnn", "block"])
def test_healthy_nets_are_within_nvfp4_and_say_they_are_emulated(files, tmp_path, net):
    proc, report = _bisect(files[f"{net}_healthy"], tmp_path / "r.json")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert report["outcome"] == "within_precision" and report["judged_at"]["ort-cpu-nvfp4"] == "nvfp4"
    precision = report["precision"]["ort-cpu-nvfp4"]
    assert precision["effective"] == "nvfp4" and EMULATED in precision["notes"][0]
    for stage in report["settings"]["backends"]["ort-cpu-nvfp4"].values():
        transform = stage["precision_transform"]
        assert transform["kind"] == "nvfp4_emulated" and transform["emulated"] == EMULATED
        assert transform["block_size"] == 16 and transform["blocks_flushed"] == {}
    text = " ".join(proc.stdout.split())
    assert f"judged at nvfp4 ({EMULATED})" in text and f"ran nvfp4: {net}_healthy: {EMULATED}" in text
    y = next(r for r in report["results"]["ort-cpu-nvfp4"] if r["probe"] == "y")
    assert 0.01 < y["rel_rmse"] < 0.4  # measured 0.31 (CNN) and 0.04 (block): FP4's rounding, within its budget


def test_mxfp8_lane_runs_the_cnn_within_its_budget(files, tmp_path):
    proc, report = _bisect(files["cnn_healthy"], tmp_path / "r.json", "ort-cpu-mxfp8")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert report["precision"]["ort-cpu-mxfp8"]["effective"] == "mxfp8"
    assert EMULATED in report["precision"]["ort-cpu-mxfp8"]["notes"][0]
    y = next(r for r in report["results"]["ort-cpu-mxfp8"] if r["probe"] == "y")
    assert y["rel_rmse"] < 0.1


@pytest.mark.parametrize(("net", "layer", "tensor"), [("cnn_fault", CONV3, "body.4.weight"),
                                                      ("block_fault", MLP_IN, None),  # its weight's name: onnx::…
                                                      ("block_outlier", MLP_IN, "/norm2/LayerNormalization_output_0")])
def test_a_flushed_block_scale_is_named_at_its_layer(files, tmp_path, net, layer, tensor):
    """A weight's blocks, or an activation's over the calibration inputs (the run's own here): half of them flush."""
    proc, report = _bisect(files[net], tmp_path / "r.json")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert report["root_cause"]["ort-cpu-nvfp4"]["probe"] == layer, report["root_cause"]
    flushed = {k: v for s in report["settings"]["backends"]["ort-cpu-nvfp4"].values()
               for k, v in s["precision_transform"]["blocks_flushed"].items()}
    assert list(flushed.values()) == [0.5], flushed  # the 16 channels without the outlier: one block of two
    name = tensor or next(iter(flushed))
    assert tensor is None or list(flushed) == [tensor]
    assert f"flushes to zero 50% of {name}'s nonzero blocks" in " ".join(report["precision"]["ort-cpu-nvfp4"]["notes"])
    # the root cause's why (bisect/findings/segment_blocks.py): the underflow named there, the ladder tried on its
    # segment —
    # FP8 first (its per-tensor scale flushes the same blocks: no cure), then the layer left out of NVFP4: verified
    hint = report["root_cause"]["ort-cpu-nvfp4"]["hint"]
    assert hint.startswith(f"NVFP4 block-scale underflow at {layer}: ") and "50% of " in hint, hint
    assert "verified: within precision with" in hint and "left out of NVFP4 (float32)" in hint, hint


def test_a_quantized_graph_is_never_quantized_again(files):
    once = PrepareGraph(files["cnn_healthy"], "ort-cpu-nvfp4", "nvfp4_emulated",
                        calib_feeds=[{"x": np.ones((1, 3, 16, 16), np.float32)}])().model
    with pytest.raises(BadInputError, match=r"already quantized \(it holds nvfp4\)"):
        PrepareGraph(once, "ort-cpu-mxfp8", "mxfp8_emulated")()


def test_a_written_nvfp4_graph_runs_as_deployed_and_is_judged_at_nvfp4(files, tmp_path):
    """The graph `ort-cpu-nvfp4` writes (a bundle's window, say), given as `ort@DIR`: read as nvfp4 by its metadata
    (`precision/held.py`), run as it is with graph optimisations off (its float8 Q/DQ), judged at nvfp4, emulated."""
    folder = tmp_path / "deploy"
    folder.mkdir()
    feed = {"x": np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)}
    onnx.save(PrepareGraph(files["cnn_healthy"], "ort-cpu-nvfp4", "nvfp4_emulated", calib_feeds=[feed])().model,
              folder / "cnn_healthy.onnx")
    proc = cpdebug("bisect", "--onnx", files["cnn_healthy"], "-b", f"ort,ort@{folder}", "--json", tmp_path / "r.json",
                   "--quiet")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    report, label = json.loads((tmp_path / "r.json").read_text()), f"ort@{folder}"
    assert report["judged_at"][label] == "nvfp4" and report["precision"][label]["effective"] == "nvfp4"
    assert EMULATED in report["precision"][label]["notes"][0]
    assert {s["graph_optimization_level"] for s in report["settings"]["backends"][label].values()} == \
        {"ORT_DISABLE_ALL"}


def test_the_flushed_layer_left_out_of_nvfp4_is_within_precision(files, tmp_path):
    """The cure the report points at, by hand: the flushed conv left in float32 (`--exclude-int8`, ModelOpt's
    nodes_to_exclude), the rest in NVFP4: within precision."""
    proc = cpdebug("bisect", "--onnx", files["cnn_fault"], "-b", "ort,ort-cpu-nvfp4", "--exclude-int8",
                   "/body/body.4/Conv", "--json", tmp_path / "r.json", "--quiet")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    notes = " ".join(json.loads((tmp_path / "r.json").read_text())["precision"]["ort-cpu-nvfp4"]["notes"])
    assert "ran 3 of 4 Conv/Gemm nodes" in notes and "flushes" not in notes
