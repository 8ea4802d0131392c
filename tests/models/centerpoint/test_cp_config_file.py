"""AWML / mmdet3d config files → CenterPointConfig: the `_base_` chain, `{{_base_.x}}`, `_delete_`, custom_imports
never imported, and one line naming the key path for whatever cp_debug does not build."""

from __future__ import annotations

import sys
import textwrap
from dataclasses import asdict

import pytest

from cp_debug.errors import BadInputError
from cp_debug.models.centerpoint.presets import PRESET_NAMES, get_preset, preset_config_path
from cp_debug.models.centerpoint.config_file import config_from_dict, read_config
from tests.cli_run import cpdebug

pytestmark = pytest.mark.needs("mmengine")

# A base in AWML's layout: a dataset file with the class names, a model file with SECOND, and a top file that
# swaps the backbone for ConvNeXt_PC with _delete_ (leftover SECOND keys would be refused, so this checks it).
DATASET = """
class_names = ["car", "truck", "bus", "bicycle", "pedestrian"]
custom_imports = dict(imports=["cp_debug_never_imported_here"], allow_failed_imports=False)
"""
MODEL = """
voxel_size = [0.32, 0.32, 8.0]
model = dict(
    type="CenterPoint",
    data_preprocessor=dict(type="Det3DDataPreprocessor", voxel=True,
                           voxel_layer=dict(max_num_points=32, voxel_size=voxel_size, max_voxels=(9000, 8000))),
    pts_voxel_encoder=dict(type="PillarFeatureNet", in_channels=4, feat_channels=[32, 32], legacy=False,
                           voxel_size=voxel_size, norm_cfg=dict(type="BN1d", eps=1e-3, momentum=0.01)),
    pts_middle_encoder=dict(type="PointPillarsScatter", in_channels=32, output_shape=(80, 80)),
    pts_backbone=dict(type="SECOND", in_channels=32, out_channels=[64, 128, 256], layer_nums=[3, 5, 5],
                      layer_strides=[1, 2, 2], norm_cfg=dict(type="BN", eps=1e-3, momentum=0.01),
                      conv_cfg=dict(type="Conv2d", bias=False)),
    pts_neck=dict(type="SECONDFPN", in_channels=[64, 128, 256], out_channels=[16, 16, 16],
                  upsample_strides=[0.5, 1, 2], norm_cfg=dict(type="BN", eps=1e-3, momentum=0.01),
                  upsample_cfg=dict(type="deconv", bias=False), use_conv_for_no_stride=True),
    pts_bbox_head=dict(type="CenterHead", in_channels=48,
                       common_heads=dict(reg=(2, 2), height=(1, 2), dim=(3, 2), rot=(2, 2), vel=(2, 2)),
                       share_conv_channel=64,
                       bbox_coder=dict(type="CenterPointBBoxCoder", max_num=500, score_threshold=0.1,
                                       out_size_factor=2, code_size=9),
                       separate_head=dict(type="SeparateHead", init_bias=-2.19, final_kernel=1),
                       loss_cls=dict(type="mmdet.GaussianFocalLoss"), norm_bbox=True),
    test_cfg=dict(pts=dict(nms_type="circle", min_radius=[1.0], post_max_size=83)),
)
"""
TOP = """
_base_ = ["./base/dataset.py", "./base/model.py"]
custom_imports = dict(imports=["cp_debug_never_imported_here"], allow_failed_imports=False)
custom_imports["imports"] += _base_.custom_imports["imports"]
point_cloud_range = [-12.8, -12.8, -3.0, 12.8, 12.8, 5.0]
voxel_size = [0.32, 0.32, 8.0]
test_pipeline = [
    dict(type="LoadPointsFromFile", coord_type="LIDAR", load_dim=5, use_dim=5),
    dict(type="LoadPointsFromMultiSweeps", sweeps_num=1, load_dim=5, use_dim=[0, 1, 2, 4], test_mode=True),
]
model = dict(
    data_preprocessor=dict(voxel_layer=dict(point_cloud_range=point_cloud_range)),
    pts_voxel_encoder=dict(type="BackwardPillarFeatureNet", point_cloud_range=point_cloud_range),
    pts_backbone=dict(_delete_=True, type="ConvNeXt_PC", in_channels=32, out_channels=[32, 16, 16, 16],
                      depths=[1, 1, 1, 1], out_indices=[1, 2, 3], drop_path_rate=0.4, layer_scale_init_value=1.0,
                      gap_before_final_norm=False, with_cp=True),
    pts_neck=dict(in_channels=[16, 16, 16], upsample_strides=[1, 2, 4]),
    pts_bbox_head=dict(tasks=[dict(num_class=5, class_names={{_base_.class_names}})],
                       bbox_coder=dict(pc_range=point_cloud_range, voxel_size=voxel_size,
                                       post_center_range=[-50.0, -50.0, -10.0, 50.0, 50.0, 10.0])),
)
"""


def write_chain(root, top: str = TOP) -> str:
    (root / "base").mkdir(exist_ok=True)
    (root / "base" / "dataset.py").write_text(textwrap.dedent(DATASET))
    (root / "base" / "model.py").write_text(textwrap.dedent(MODEL))
    path = root / "pillar_convnext_small.py"
    path.write_text(textwrap.dedent(top))
    return str(path)


def test_chain_with_base_references_and_delete(tmp_path, monkeypatch):
    # a module the config's custom_imports name, which would leave a marker if it were ever imported
    (tmp_path / "cp_debug_never_imported_here.py").write_text(
        f"open({str(tmp_path / 'IMPORTED')!r}, 'w').write('x')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = read_config(write_chain(tmp_path))
    assert "cp_debug_never_imported_here" not in sys.modules and not (tmp_path / "IMPORTED").exists()
    assert cfg.name == "pillar_convnext_small"
    assert cfg.grid_size == (80, 80) and cfg.max_voxels == 8000 and cfg.max_num_points == 32
    assert cfg.voxel_encoder == "BackwardPillarFeatureNet" and cfg.decorated_channels == 9
    assert cfg.backbone == "ConvNeXt_PC" and cfg.convnext_channels == (32, 16, 16, 16)
    assert cfg.convnext_out_indices == (1, 2, 3) and cfg.convnext_layer_scale == 1.0
    assert cfg.backbone_output_strides == (2, 4, 8) and cfg.out_size_factor == 2 and cfg.head_size == (40, 40)
    assert cfg.class_names == ("car", "truck", "bus", "bicycle", "pedestrian")  # from {{_base_.class_names}}
    assert cfg.post_center_range == (-50.0, -50.0, -10.0, 50.0, 50.0, 10.0) and cfg.post_max_size == 83
    assert cfg.heatmap_init_bias == -2.19 and cfg.use_dim == (0, 1, 2, 4) and cfg.load_dim == 5


def test_shipped_preset_configs_read_by_mmengine_are_the_presets():
    # the presets are read without mmengine (presets._literal_file); mmengine reads the same files alike
    for name in PRESET_NAMES:
        preset = get_preset(name)
        path = preset_config_path(name)
        assert asdict(read_config(path)) == asdict(preset), name
        assert get_preset(str(path)) == preset


def one_line_error(path_or_dict, match: str) -> str:
    with pytest.raises(BadInputError, match=match) as err:
        if isinstance(path_or_dict, dict):
            config_from_dict(path_or_dict, "inline")
        else:
            read_config(path_or_dict)
    assert "\n" not in str(err.value)
    return str(err.value)


def test_missing_base_is_named(tmp_path):
    path = tmp_path / "top.py"
    path.write_text('_base_ = ["./datasets/t4_base.py"]\nmodel = dict()\n')
    msg = one_line_error(path, "_base_ file is missing")
    assert "datasets/t4_base.py" in msg


def test_a_base_chain_that_loops_is_one_line_naming_the_loop(tmp_path):
    """mmengine recurses round a `_base_` loop to Python's limit (and finalizers failing in that depth printed
    "Exception ignored in sys.unraisablehook" over and over): the loop is found first, reading the files' `_base_`
    as syntax, and named; a file that is its own base too, and through a tuple or a plain string."""
    (tmp_path / "a.py").write_text("_base_ = ['./b.py']\nx = 1\n")
    (tmp_path / "b.py").write_text("_base_ = ('./a.py',)\ny = 2\n")
    top = tmp_path / "top.py"
    top.write_text("_base_ = ['./c.py', './a.py']\nmodel = dict()\n")
    (tmp_path / "c.py").write_text("z = 3\n")
    assert one_line_error(top, "its _base_ chain loops").endswith("(a.py → b.py → a.py); break the loop")
    (tmp_path / "own.py").write_text("_base_ = './own.py'\nmodel = dict()\n")
    assert "(own.py → own.py)" in one_line_error(tmp_path / "own.py", "its _base_ chain loops")
    (tmp_path / "c.py").write_text("_base_ = './d.py'\nz = 3\n")  # a chain without a loop reads as before
    (tmp_path / "d.py").write_text("w = 4\n")
    (tmp_path / "fine.py").write_text("_base_ = ['./c.py']\nmodel = dict()\n")
    from cp_debug.models.centerpoint.config_bases import base_loop

    assert base_loop(tmp_path / "fine.py") is None


@pytest.mark.parametrize("change, match", [
    ('TOP.replace(\'type="ConvNeXt_PC"\', \'type="ResNet"\')',
     r"model\.pts_backbone\.type = 'ResNet' is not built by cp_debug; supported: 'SECOND', 'ConvNeXt_PC'"),
    # without _delete_ the base's SECOND keys stay beside ConvNeXt_PC's: refused, not silently dropped
    ("TOP.replace('_delete_=True, ', '')", r"model\.pts_backbone\.norm_cfg\.type = 'BN' is not built"),
    ("TOP.replace('with_cp=True', 'with_cp=True, large_arch=dict(stages=[3])')", r"model\.pts_backbone\.large_arch"),
    ("TOP.replace('legacy', 'legacy') + 'model[\"pts_voxel_encoder\"][\"legacy\"] = True'",
     r"model\.pts_voxel_encoder\.legacy = True"),
    ("TOP + 'model[\"test_cfg\"] = dict(pts=dict(nms_type=\"rotate\"))'", r"model\.test_cfg\.pts\.nms_type = 'rotate'"),
    ("TOP.replace('upsample_strides=[1, 2, 4]', 'upsample_strides=[1, 2, 4], bogus=1')",
     r"model\.pts_neck\.bogus = 1 is not built by cp_debug; cp_debug does not read this key"),
])
def test_unsupported_is_one_line_naming_the_key(tmp_path, change, match):
    one_line_error(write_chain(tmp_path, eval(change)), match)


def test_inconsistent_values_are_refused():
    with pytest.raises(BadInputError, match=r"model\.pts_middle_encoder\.output_shape = \[10, 10\]"):
        data = {"model": {"type": "CenterPoint",
                          "data_preprocessor": {"type": "Det3DDataPreprocessor", "voxel": True,
                                                "voxel_layer": {"max_num_points": 20, "voxel_size": [0.2, 0.2, 8],
                                                                "point_cloud_range": [0, 0, -3, 4, 4, 5],
                                                                "max_voxels": 100}},
                          "pts_voxel_encoder": {"type": "PillarFeatureNet", "legacy": False,
                                                "voxel_size": [0.2, 0.2, 8], "point_cloud_range": [0, 0, -3, 4, 4, 5],
                                                "feat_channels": [32]},
                          "pts_backbone": {"type": "SECOND", "in_channels": 32},
                          "pts_middle_encoder": {"type": "PointPillarsScatter", "in_channels": 32,
                                                 "output_shape": [10, 10]}}}
        config_from_dict(data, "inline")


def test_missing_mmengine_is_one_line_saying_what_to_install(tmp_path, monkeypatch):
    from cp_debug.errors import BackendUnavailableError

    monkeypatch.setitem(sys.modules, "mmengine.config", None)  # `from mmengine.config import ...` fails
    with pytest.raises(BackendUnavailableError, match=r"pip install 'cp-debug\[config\]'"):
        read_config(write_chain(tmp_path))


def test_cli_config_with_missing_base_exits_2(tmp_path):
    path = tmp_path / "top.py"
    path.write_text('_base_ = ["../nowhere/base.py"]\n')
    proc = cpdebug("export", "--config", path, "--out", tmp_path / "out")
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("cpdebug: error:")]
    assert len(lines) == 1 and "nowhere/base.py" in lines[0] and "Traceback" not in proc.stderr


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
def test_cli_bisect_of_a_config_file_names_convnext_probes_by_module(tmp_path):
    import json

    out = tmp_path / "run.json"
    proc = cpdebug("bisect", "--config", write_chain(tmp_path), "--random-weights", "--backends", "torch,ort",
                   "--no-noise-floor", "--no-refine", "--json", out, "--quiet")
    assert proc.returncode in (0, 1, 4), proc.stderr[-2000:]
    report = json.loads(out.read_text())
    names = [p["name"] for p in report["probes"]]
    assert "pts_backbone.stages.0" in names and "pts_backbone.downsample_layers.1" in names, names
    assert report["model_record"]["config"].endswith("pillar_convnext_small.py")
    assert report["model_record"]["preset"] is None


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
def test_convnext_blocks_local_errors_are_computed_for_every_layer(tmp_path):
    """A torch candidate's local error re-runs each module on its recorded positional inputs: the ConvNeXt block's
    LayerNorm must take its (N, C, H, W) map positionally (a channels_last keyword was lost, and the H100 run of
    torch-cuda-fp16 reported 'local error of ...norm not computed' for every block)."""
    import json

    out = tmp_path / "run.json"
    proc = cpdebug("bisect", "--config", write_chain(tmp_path), "--random-weights", "--backends",
                   "torch,torch-cpu-fp16", "--level", "all", "--no-noise-floor", "--json", out, "--quiet")
    assert proc.returncode in (0, 1, 4), proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert not [w for w in report["warnings"] if "not computed" in w], report["warnings"]
    rows = {r["probe"]: r for r in report["results"]["torch-cpu-fp16"]}
    assert rows["pts_backbone.stages.0.0.norm"]["local_max_abs"] is not None


def test_the_test_pipelines_sweeps(tmp_path):
    """LoadPointsFromMultiSweeps: sweeps_num past scans (mmdet3d's default 10), remove_close; none without the step."""
    step = 'dict(type="LoadPointsFromMultiSweeps", sweeps_num=1, load_dim=5, use_dim=[0, 1, 2, 4], test_mode=True)'
    cfg = read_config(write_chain(tmp_path, TOP.replace(step, step.replace("sweeps_num=1", "sweeps_num=3, "
                                                                          "remove_close=True"))))
    assert (cfg.sweeps_num, cfg.sweeps_remove_close) == (3, True)
    cfg = read_config(write_chain(tmp_path, TOP.replace(step, step.replace("sweeps_num=1, ", ""))))
    assert (cfg.sweeps_num, cfg.sweeps_remove_close) == (10, False)
    cfg = read_config(write_chain(tmp_path, TOP.replace(step + ",", "").replace("use_dim=5", "use_dim=[0, 1, 2, 4]")))
    assert cfg.sweeps_num == 0
    one_line_error(write_chain(tmp_path, TOP.replace("sweeps_num=1", "sweeps_num=-2")), "sweeps_num -2")
