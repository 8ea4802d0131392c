"""`SPEC@DIR`: the user's own deployed ONNX pair as a bisect candidate (issue 21 §3).

The deployed files are cp_debug's own export of the tiny preset, written to a folder under AWML's names and then
changed as a user's pipeline would change them: one layer's weights scaled (the planted fault), every node and
tensor renamed n0, n1, … (as some simplifiers write them), or the interface mixed up in the ways seen in the wild.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import pytest

from cp_debug.backends.spec import BackendSpec, parse_backends
from cp_debug.bisect.subjects.deployed import deployed_stages
from cp_debug.bisect.engine import BisectEngine, BisectOptions
from cp_debug.errors import BadInputError
from cp_debug.probes.foreign import map_foreign
from cp_debug.probes.interface import InterfaceMismatchError
from tests.bisect.deployed_files import edited as _edited, rename as _rename, write_folder as _write

PLANTED_CONV = "/pts_backbone/blocks.1/blocks.1.3/Conv"
# the planted conv's BatchNorm was folded into it by the exporter: its tensor is the BN's (naming.py)
PLANTED_LAYER = ("pts_backbone.blocks.1.3", "pts_backbone.blocks.1.4")


def _small():
    """The tiny preset (40 x 40 of its 0.64 m pillars on +-12.8 m) under a name of its own."""
    from cp_debug.models.centerpoint.presets import get_preset

    cfg = get_preset("tiny").with_(name="tiny-40", point_cloud_range=(-12.8, -12.8, -3.0, 12.8, 12.8, 5.0))
    assert cfg.grid_size == (40, 40)
    return cfg


@pytest.fixture(scope="module")
def subject():
    from cp_debug.recipes.centerpoint.subject import centerpoint_subject

    return centerpoint_subject(_small(), random_weights=True, trace_side=64)


def _plant(graph: gs.Graph) -> None:
    conv = next(n for n in graph.nodes if n.name == PLANTED_CONV)
    conv.inputs[1].values = conv.inputs[1].values * np.float32(1.5)


def _bisect(subject, reference: str, folder: Path):
    label = f"ort@{folder}"
    engine = BisectEngine(subject, (reference, BackendSpec.parse(reference)), [(label, BackendSpec.parse(label))],
                          BisectOptions(noise_floor=False))
    return engine.run()


def test_spec_at_dir_grammar(tmp_path):
    (tmp_path / "pts_voxel_encoder.onnx").write_bytes(b"")
    spec = BackendSpec.parse(f"ORT-cpu-fp16@{tmp_path}")
    assert (spec.framework, spec.device, spec.precision, spec.onnx_dir) == ("ort", "cpu", "fp16", tmp_path)
    assert str(spec) == f"ort-cpu-fp16@{tmp_path}"
    assert BackendSpec.parse("trt-fp16").onnx_dir is None
    pairs = parse_backends(f"torch,ort@{tmp_path},trt-fp16@{tmp_path}")
    assert [s.onnx_dir for _, s in pairs] == [None, tmp_path, tmp_path]
    with pytest.raises(BadInputError, match="torch cannot run"):
        BackendSpec.parse(f"torch@{tmp_path}")
    with pytest.raises(BadInputError, match="is neither an .onnx file nor a folder"):
        BackendSpec.parse(f"ort@{tmp_path / 'nowhere'}")
    file = tmp_path / "pts_voxel_encoder.onnx"  # a one-stage model's file itself; a recipe of two refuses it later
    assert BackendSpec.parse(f"ort-cpu-fp16@{file}").onnx_dir == file
    (tmp_path / "notes.txt").write_text("")
    with pytest.raises(BadInputError, match="is neither an .onnx file nor a folder"):
        BackendSpec.parse(f"ort@{tmp_path / 'notes.txt'}")
    with pytest.raises(BadInputError, match="holds no .onnx"):
        BackendSpec.parse(f"ort@{tmp_path.parent}")


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
@pytest.mark.slow  # the torch reference runs the backbone three times: about 5 CPU s on the 40 x 40 grid
def test_planted_layer_is_the_root_cause_through_scope_names(subject, tmp_path):
    folder = _write(tmp_path / "deploy", subject, {"pts_backbone_neck_head": [_plant]})
    report = _bisect(subject, "torch", folder)
    cand = report.candidates[0]
    assert cand.root_cause is not None and cand.root_cause.probe in PLANTED_LAYER
    assert cand.first_divergent in PLANTED_LAYER and cand.path[0] == "pts_backbone.blocks.1"
    by_probe = {r.probe: r for r in cand.results}
    assert by_probe["pts_backbone.blocks.0"].status == "ok"  # upstream of the plant: compared, and equal
    assert by_probe["pts_backbone.blocks.1"].status == "diverged"
    assert any("13 of 13 probes mapped" in w and "by scope" in w for w in report.warnings)


def test_renamed_copy_still_maps_and_names_the_same_layer(subject, tmp_path):
    folder = _write(tmp_path / "deploy", subject, {"pts_backbone_neck_head": [_plant, _rename],
                                                    "pts_voxel_encoder": [_rename]})
    report = _bisect(subject, "ort", folder)  # cp_debug's own export as the reference
    cand = report.candidates[0]
    assert cand.root_cause is not None and cand.root_cause.probe in PLANTED_LAYER
    assert cand.root_cause.nodes == () and not cand.graph_differences  # a changed weight is no graph difference
    assert any("by structure" in w for w in report.warnings)
    mapped = report.settings["deployed"][f"ort@{folder}"]["pts_backbone_neck_head"]["mapped"]
    assert mapped["pts_backbone.blocks.1"]["by"] == "structure" and mapped["pts_backbone.blocks.1"]["tensor"][0] == "t"


@pytest.mark.parametrize("level", ["block", "layer"])
def test_structure_maps_each_probe_onto_its_own_tensor(subject, level):
    for st in subject.stages:
        table: dict[str, str] = {}
        renamed = _edited(st.onnx(), lambda g: _rename(g, table))
        found = map_foreign(renamed, st.onnx(), st.probe_map(), st.trace())
        ours = [p for p in st.probes_at(level) if p in st.probe_map().tensors]
        mapped = [p for p in ours if p in found.probe_map.tensors]
        assert len(mapped) >= 0.9 * len(ours) and found.counts()["scope"] == 0
        for p in mapped:  # the very tensor: renamed image of ours, or the interface name itself
            want = st.probe_map().tensors[p]
            assert found.probe_map.tensors[p] == table.get(want, want)


def test_an_unaligned_layer_is_left_unmapped_not_guessed(subject):
    st = subject.stages[1]

    def widen(graph: gs.Graph) -> None:  # the same conv as 5x5 with a zero rim: another weight shape, no counterpart
        conv = next(n for n in graph.nodes if n.name == PLANTED_CONV)
        conv.inputs[1] = gs.Constant("w5x5", np.pad(conv.inputs[1].values, ((0, 0), (0, 0), (1, 1), (1, 1))))
        conv.attrs.update(kernel_shape=[5, 5], pads=[2, 2, 2, 2])
        _rename(graph)

    found = map_foreign(_edited(st.onnx(), widen), st.onnx(), st.probe_map(), st.trace())
    assert "pts_backbone.blocks.1.4" in found.probe_map.unmapped
    assert "no counterpart" in found.probe_map.unmapped["pts_backbone.blocks.1.4"]
    assert "pts_backbone.blocks.0" in found.probe_map.tensors  # the rest still maps


def _set_input(dims):
    def edit(graph: gs.Graph) -> None:
        graph.inputs[0].shape = dims
    return edit


def _pad_to_11(graph: gs.Graph) -> None:
    """The voxel encoder exported for 11 channels (AWML's hard-coded profile) of a 10-channel model."""
    graph.inputs[0].shape = ["num_voxels", "num_max_points", 11]
    mm = next(n for n in graph.nodes if n.op == "MatMul")
    mm.inputs[1].values = np.pad(mm.inputs[1].values, ((0, 1), (0, 0)))


def _sigmoid_head(graph: gs.Graph) -> None:
    heat = next(t for t in graph.outputs if t.name == "heatmap")
    raw = gs.Variable("heatmap_logits", dtype=heat.dtype, shape=heat.shape)
    heat.inputs[0].outputs = [raw if o is heat else o for o in heat.inputs[0].outputs]
    graph.nodes.append(gs.Node("Sigmoid", "/pts_bbox_head/Sigmoid", inputs=[raw], outputs=[heat]))


@pytest.mark.parametrize("stage, edit, words", [
    ("pts_voxel_encoder", _set_input(["num_voxels", 1, 32]),
     "processed pillar features where raw decorated voxel features belong"),
    ("pts_voxel_encoder", _pad_to_11, "takes 11 feature channels where the model computes 10: zero-padding"),
    ("pts_backbone_neck_head", _sigmoid_head, "sigmoid inside the exported head: the decoder applies it again"),
    ("pts_backbone_neck_head", _set_input(["batch_size", 64, "height", "width"]),
     "input 'spatial_features' is (?, 64, ?, ?) but the model's stage takes (?, 32, ?, ?)"),
])
def test_interface_mixups_are_named_in_one_line(subject, tmp_path, stage, edit, words):
    folder = _write(tmp_path / "deploy", subject, {stage: [edit]})
    with pytest.raises(InterfaceMismatchError) as err:
        deployed_stages(BackendSpec.parse(f"ort@{folder}"), subject, {})
    assert words in str(err.value) and "\n" not in str(err.value) and err.value.exit_code == 2
    assert f"{stage}.onnx does not fit the model" in str(err.value)


def test_missing_file_and_deployed_reference_are_refused(subject, tmp_path):
    folder = _write(tmp_path / "deploy", subject, {})
    (folder / "pts_backbone_neck_head.onnx").unlink()
    with pytest.raises(BadInputError, match="pts_backbone_neck_head.onnx is missing"):
        deployed_stages(BackendSpec.parse(f"ort@{folder}"), subject, {})
    label = f"ort@{folder}"
    engine = BisectEngine(subject, (label, BackendSpec.parse(label)), [("ort", BackendSpec.parse("ort"))])
    with pytest.raises(BadInputError, match="the reference must be the model"):
        engine.run()


def test_eval_pipeline_runs_the_deployed_files_and_checks_them(subject, tmp_path):
    """eval / bench build their stage runners through BackendPipeline: `ort@DIR` runs the user's files (a renamed
    copy gives our export's heads exactly) and a mixed-up file stops it in one line."""
    from cp_debug.recipes.centerpoint.eval.backend_pipeline import BackendPipeline
    from cp_debug.lidar.synthetic import synthetic_scene

    cfg = _small()
    points = synthetic_scene(3, cfg).points[::4]
    ours = _write(tmp_path / "ours", subject, {})
    deployed = _write(tmp_path / "deploy", subject, {st.name: [_rename] for st in subject.stages})
    heads = {}
    for label in ("ort", f"ort@{deployed}"):  # ONNX backends: the torch model is not needed
        with BackendPipeline(label, BackendSpec.parse(label), cfg, None, onnx_dir=ours) as pipe:
            heads[label] = pipe.run(points, capture=False).head
    for name, value in heads["ort"].items():
        np.testing.assert_array_equal(heads[f"ort@{deployed}"][name], value)
    onnx.save(_edited(onnx.load(str(ours / "pts_backbone_neck_head.onnx")), _sigmoid_head),
              deployed / "pts_backbone_neck_head.onnx")
    label = f"ort@{deployed}"
    with pytest.raises(InterfaceMismatchError, match="sigmoid inside the exported head"):
        BackendPipeline(label, BackendSpec.parse(label), cfg, None, onnx_dir=ours).__enter__()


def test_the_files_own_precision_is_read_not_assumed(subject):
    from cp_debug.bisect.subjects.deployed import file_precision
    from cp_debug.precision.fp16 import convert_to_fp16

    st = subject.stages[1]
    assert file_precision(st.onnx()) == "fp32"
    assert file_precision(convert_to_fp16(st.onnx())) == "fp16"
