"""TensorRT for RTX's real builder on cp_debug's graphs: it builds ahead of time without a GPU, so these run on the
CPU machine and in CI (the wheels are in the `test` extra); skipped, and said so, where they are not installed.

What is real here: the ONNX parser, the network, the debug-tensor marks, the builder config and
`build_serialized_network` of TensorRT-RTX 1.x, on the tiny net and the tiny CenterPoint pair at FP32, FP16
(cp_debug's transform, with and without nodes kept in FP32) and INT8 (the Q/DQ of the quantizer; the PTQ export is
built in tests/ptq/test_qdq_export.py). What is not: running an engine — TensorRT-RTX's runtime needs a GPU of
compute capability 8.0, 8.6, 8.9 or 12.x, and refuses this machine (the refusal after the build is tested here).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from cp_debug.backends.spec import BackendSpec
from cp_debug.backends.trt.trt_engine import EngineRefusedError
from cp_debug.backends.trt.trt_runner import TrtRunner
from cp_debug.errors import BackendRuntimeError, BackendUnavailableError

RELU = "/Relu_output_0"
CONV2 = "/c2/Conv_output_0"


@pytest.fixture(scope="module")
def rtx():
    from cp_debug.backends.trt.trt_library import load_library

    try:
        return load_library("trt-rtx")
    except BackendUnavailableError as err:
        pytest.skip(f"TensorRT-RTX not installed here, not run: {err}")


@pytest.fixture(scope="module")
def tiny_pair(tiny_cfg, tmp_path_factory):
    """The tiny CenterPoint preset's deployment pair (random weights), as `cpdebug export` writes it."""
    from cp_debug.models.centerpoint.model import build_model
    from cp_debug.recipes.centerpoint.export import export_onnx

    out = tmp_path_factory.mktemp("tiny_pair")
    result = export_onnx(build_model(tiny_cfg, seed=3), tiny_cfg, out)
    return {"pts_voxel_encoder": result.voxel_encoder, "pts_backbone_neck_head": result.backbone}


def _every_tensor(path) -> list[str]:
    m = onnx.load(str(path))
    outputs = {o.name for o in m.graph.output}
    return [t for n in m.graph.node for t in n.output if t and t not in outputs and n.op_type != "Constant"]


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_the_tiny_net_parses_and_builds_at_each_precision(rtx, tiny, tmp_path, precision):
    spec = BackendSpec.parse(f"trt-rtx-{precision}")
    kw = {"calib_feeds": tiny.calib} if precision == "int8" else {}
    r = TrtRunner(tiny.path, spec, extra_outputs=[RELU, CONV2], cache_dir=tmp_path, **kw)
    facts = r.build()
    assert facts.library == f"TensorRT-RTX {rtx.version_text}" and facts.layers >= 5
    assert facts.probes_read_as == "debug" and facts.probes_requested == 2 - len(r.missing_outputs)
    assert facts.engine_bytes > 10_000 and facts.targets  # built for its default targets (8.x, 12.x)
    plan = r.settings()["build_plan"]
    assert plan["strongly_typed"] and plan["flags"] == []  # TensorRT-RTX: precision from the ONNX alone
    assert plan["onnx_transform"] == {"fp32": "none", "fp16": "fp16", "int8": "int8_qdq"}[precision]
    assert len(list(tmp_path.glob("*.engine"))) == 1
    again = TrtRunner(tiny.path, spec, extra_outputs=[RELU, CONV2], cache_dir=tmp_path, **kw)
    assert again.build() is None and again.settings()["cache"].startswith("engine from the cache")


def test_the_engine_is_refused_after_the_build_where_tensorrt_rtx_cannot_run(rtx, tiny, tmp_path):
    from cp_debug.backends.factory import runs_here

    if runs_here(BackendSpec.parse("trt-rtx-fp16")):
        pytest.skip("a GPU TensorRT-RTX runs on is here: nothing is refused")
    r = TrtRunner(tiny.path, BackendSpec.parse("trt-rtx-fp16"), extra_outputs=[RELU], cache_dir=tmp_path)
    with pytest.raises(EngineRefusedError) as err:
        r.activate()
    text = str(err.value)
    assert err.value.exit_code == 3 and "\n" not in text
    assert text.startswith(f"TensorRT-RTX {rtx.version_text} built the engine of trt-rtx-fp16 (tiny.onnx) (it parses "
                           "and builds) but cannot run it here: ")
    assert "Error Code" in text  # the library's own words: no driver here, another GPU on an H100
    assert list(tmp_path.glob("*.engine"))  # the build happened and was kept


def test_a_node_the_parser_cannot_take_is_named_with_its_op(rtx, tiny, tmp_path):
    model = onnx.load(str(tiny.path))
    node = next(n for n in model.graph.node if n.op_type == "Relu")
    node.op_type, node.name, node.domain = "NoSuchOp", "planted", "com.example"  # a valid ONNX file, an op nobody has
    model.opset_import.append(onnx.helper.make_opsetid("com.example", 1))
    r = TrtRunner(model, BackendSpec.parse("trt-rtx-fp32"), cache_dir=tmp_path)
    with pytest.raises(BackendRuntimeError) as err:
        r.build()
    assert str(err.value).startswith(f"TensorRT-RTX {rtx.version_text} cannot parse trt-rtx-fp32 (")
    assert "node planted (NoSuchOp): " in str(err.value) and "\n" not in str(err.value)
    assert err.value.exit_code == 3


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "fp16", "fp16-keep"])
def test_the_tiny_centerpoint_pair_builds_with_every_probe(rtx, tiny_pair, tmp_path, precision):
    """Both stages of the pair, every tensor a probe (`--level all`); `fp16-keep` keeps the backbone's first conv
    and the heads' convs in FP32, as a `cpdebug fix` pair does."""
    rng = np.random.default_rng(0)
    feeds = {"pts_voxel_encoder": {"input_features": rng.standard_normal((500, 32, 10), dtype=np.float32)},
             "pts_backbone_neck_head": {"spatial_features": rng.standard_normal((1, 32, 160, 160),
                                                                                 dtype=np.float32)}}
    for stage, path in tiny_pair.items():
        keep = []
        if precision == "fp16-keep" and stage == "pts_backbone_neck_head":
            keep = [n.name for n in onnx.load(str(path)).graph.node if n.op_type == "Conv"][:1] + \
                   [n.name for n in onnx.load(str(path)).graph.node if "task_heads" in n.name and n.op_type == "Conv"]
        spec = BackendSpec.parse(f"trt-rtx-{precision.split('-')[0]}")
        probes = _every_tensor(path)
        r = TrtRunner(path, spec, extra_outputs=probes, keep_fp32_nodes=keep, cache_dir=tmp_path)
        facts = r.build(feeds[stage])
        assert facts.layers > 5 and facts.probes_in_network >= 0.5 * len(probes), (stage, facts)
        transform = r.settings()["precision_transform"]
        assert transform["kind"] == ("none" if precision == "fp32" else "fp16")
        if keep:
            assert transform["fp32_nodes_user"] == len(keep) > 1


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
@pytest.mark.slow
def test_a_bisect_against_tensorrt_rtx_builds_every_stage_then_ends_with_its_reason(rtx, tmp_path):
    """`cpdebug bisect --backends torch,trt-rtx-fp16` where TensorRT-RTX cannot run: the reference runs, both stages'
    engines are built (the second on the reference's feed), the report is written with the candidate's error, and
    the run ends with the library's own line, exit 3."""
    from cp_debug.backends.factory import runs_here
    from tests.cli_run import cpdebug

    if runs_here(BackendSpec.parse("trt-rtx-fp16")):
        pytest.skip("a GPU TensorRT-RTX runs on is here: the bisect runs instead")
    report = tmp_path / "r.json"
    proc = cpdebug("bisect", "--preset", "tiny", "--backends", "torch,trt-rtx-fp16", "--json", str(report),
                   env={"CPDEBUG_CACHE_DIR": str(tmp_path / "cache")})
    assert proc.returncode == 3, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("cpdebug: error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr
    assert errors[0].startswith(f"cpdebug: error: trt-rtx-fp16: TensorRT-RTX {rtx.version_text} built the engines of "
                                "pts_voxel_encoder (")
    assert " and pts_backbone_neck_head (" in errors[0] and "but cannot run them here: Error Code" in errors[0]
    assert len(list((tmp_path / "cache" / "tensorrt").glob("*.engine"))) == 2  # both stages built, and kept
    import json

    doc = json.loads(report.read_text())
    assert doc["errors"]["trt-rtx-fp16"].startswith("TensorRT-RTX") and doc["outcomes"]["trt-rtx-fp16"] is None
    assert doc["results"]["trt-rtx-fp16"] == []


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
@pytest.mark.slow
def test_a_sweep_against_tensorrt_rtx_that_cannot_run_here_ends_with_its_reason(rtx, tmp_path):
    """A library that will not run its engine here fails every frame alike: the sweep ends with its line, exit 3,
    instead of a table of failed frames."""
    from cp_debug.backends.factory import runs_here
    from tests.cli_run import cpdebug

    if runs_here(BackendSpec.parse("trt-rtx-fp16")):
        pytest.skip("a GPU TensorRT-RTX runs on is here: the sweep runs instead")
    proc = cpdebug("sweep", "--preset", "tiny", "--n", "1", "--backends", "torch,trt-rtx-fp16", "--out",
                   str(tmp_path / "s"), env={"CPDEBUG_CACHE_DIR": str(tmp_path / "cache")})
    assert proc.returncode == 3, (proc.stdout[-500:], proc.stderr[-500:])
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("cpdebug: error:")]
    assert len(errors) == 1 and "cannot run it here: Error Code" in errors[0] and "Traceback" not in proc.stderr
