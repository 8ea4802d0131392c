"""autoware-ml's CenterPoint YAML configs (tier4/autoware-ml, copied unchanged into autoware_ml_configs/) as
`--config`: composed as Hydra composes them, mapped onto CenterPointConfig, refused in one line where cp_debug does
not build them; and its Lightning checkpoints loaded onto cp_debug's model."""

from __future__ import annotations

import shutil
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from cp_debug.errors import BadInputError, CheckpointError
from cp_debug.models.centerpoint.config_yaml import compose_yaml, read_deploy_settings, read_yaml_config

pytestmark = pytest.mark.needs("omegaconf")

TREE = Path(__file__).with_name("autoware_ml_configs")
TASKS = TREE / "tasks" / "detection3d" / "centerpoint"
REAL = ("voxel020_second_secfpn_51m_nuscenes", "voxel024_second_secfpn_120m_t4dataset_j6gen2")
TINY = TASKS / "cp_debug_tiny.yaml"


def test_the_real_configs_build_as_their_files_say():
    nus, t4 = (read_yaml_config(TASKS / f"{name}.yaml") for name in REAL)
    # the child files' values and the base's, through the defaults list and ${...} interpolations
    assert nus.grid_size == (512, 512) and t4.grid_size == (1020, 1020)
    assert (nus.backbone_strides, nus.out_size_factor) == ((2, 2, 2), 4)
    assert (t4.backbone_strides, t4.out_size_factor) == ((1, 2, 2), 2)
    assert nus.class_names == t4.class_names == ("car", "truck", "bus", "bicycle", "pedestrian", "traffic_cone",
                                                 "barrier")  # ${dataset.detection3d.class_names}, dataset: ${t4dataset}
    assert (nus.in_channels, nus.use_dim, nus.max_voxels, nus.max_num_points) == (5, (0, 1, 2, 3, 4), 96000, 32)
    # autoware-ml's sweeps_num counts the key frame, cp_debug's (mmdet3d's) the past scans besides it
    assert (nus.sweeps_num, t4.sweeps_num) == (9, 1)
    # autoware-ml's modules: stride-1 neck block a ConvTranspose, 3x3 head branches, every BN eps 1e-3
    assert not t4.neck_conv_for_no_stride and t4.head_inner_kernel == 3
    assert (t4.head_norm_eps, t4.norm_eps, t4.pfn_norm_eps) == (1e-3, 1e-3, 1e-3)
    assert t4.nms_dist_sq == 1.0 and t4.score_threshold == 0.0


def test_composition_equals_hydras():
    hydra = pytest.importorskip("hydra")
    from omegaconf import OmegaConf

    for name in (*REAL, TINY.stem):
        with hydra.initialize_config_dir(config_dir=str(TREE.resolve()), version_base=None):
            ref = hydra.compose(config_name=f"tasks/detection3d/centerpoint/{name}")
        mine = compose_yaml(TASKS / f"{name}.yaml")
        assert OmegaConf.to_container(mine) == OmegaConf.to_container(ref), name


def test_deploy_settings_are_the_configs():
    # base.yaml's deploy section overrides autoware-ml's default exporter for CenterPoint (defaults/modules/deploy.yaml)
    real = read_deploy_settings(TASKS / f"{REAL[1]}.yaml")
    assert (real.dynamo, real.opset_version, real.do_constant_folding) == (False, 17, False)
    assert real.files == ("pts_voxel_encoder_centerpoint.onnx", "pts_backbone_neck_head_centerpoint.onnx")
    tiny = read_deploy_settings(TINY)
    assert (tiny.dynamo, tiny.opset_version) == (True, 21)


def _copy_tree(tmp_path: Path) -> Path:
    shutil.copytree(TREE, tmp_path / "configs")
    return tmp_path / "configs" / "tasks" / "detection3d" / "centerpoint"


@pytest.mark.parametrize("edit, words", [
    (("layer_strides: [1, 2, 2]", "layer_strides: [1, 2, 2]\n    extra_key: 3"), "model.pts_backbone.extra_key = 3"),
    (("  pts_backbone:\n", "  pts_backbone:\n    _target_: my_models.ResNetBackbone\n"),
     "model.pts_backbone._target_ = 'my_models.ResNetBackbone' is not built"),
    (("out_size_factor: 2", "out_size_factor: 4"), "out_size_factor is 4"),
    (("output_shape: [160, 160]", "output_shape: [128, 160]"), "model.pts_middle_encoder.output_shape"),
    (("  bbox_head:\n", "  bbox_head:\n    use_velocity: false\n"), "use_velocity = False"),
    (("- /datasets/t4dataset/lidar", "- /datasets/t4dataset/radar"), "defaults entry /datasets/t4dataset/radar"),
    (("dataset: ${t4dataset}", "dataset: ${t4datasets}"), "cannot be resolved"),
])
def test_what_is_not_built_is_one_line_naming_the_key(tmp_path, edit, words):
    tasks = _copy_tree(tmp_path)
    path = tasks / "cp_debug_tiny.yaml"
    text = path.read_text()
    assert edit[0] in text
    path.write_text(text.replace(edit[0], edit[1], 1))
    with pytest.raises(BadInputError) as err:
        read_yaml_config(path)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_a_base_file_and_a_file_outside_its_tree_are_refused(tmp_path):
    with pytest.raises(BadInputError, match=r"is \?\?\? .*not a base file"):
        read_yaml_config(TASKS / "base.yaml")
    alone = tmp_path / "voxel020.yaml"
    shutil.copy(TASKS / f"{REAL[0]}.yaml", alone)
    with pytest.raises(BadInputError, match="inside its autoware-ml config tree"):
        read_yaml_config(alone)


# -- checkpoints -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def replica():
    from cp_debug.models.centerpoint.config_yaml import _resolved
    from tests.models.centerpoint.autoware_ml_replica import CenterPointDetectionModel

    return CenterPointDetectionModel(_resolved(compose_yaml(TINY), "model", TINY.stem))


def test_a_lightning_checkpoint_loads_and_computes_what_autoware_ml_computes(replica, tmp_path):
    from cp_debug.models.centerpoint.model import BackboneNeckHeadStage, VoxelEncoderStage
    from cp_debug.models.centerpoint.source import load_model
    from tests.models.centerpoint.autoware_ml_replica import (_BackboneNeckHeadExport, _VoxelEncoderExport,
                                                              save_lightning_checkpoint)

    ckpt = save_lightning_checkpoint(replica, tmp_path / "best.ckpt")
    ours = load_model(str(TINY), ckpt).model
    gen = torch.Generator().manual_seed(3)
    spatial = torch.randn(1, 32, 32, 32, generator=gen).relu()
    feats = torch.randn(300, 32, 11, generator=gen)
    with torch.no_grad():
        theirs_maps = _BackboneNeckHeadExport(replica.pts_backbone, replica.pts_neck, replica.bbox_head)(spatial)
        for a, b in zip(BackboneNeckHeadStage(ours)(spatial), theirs_maps):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
        pillars = _VoxelEncoderExport(replica.pts_voxel_encoder)(feats)
        torch.testing.assert_close(VoxelEncoderStage(ours)(feats), pillars, rtol=0, atol=1e-6)


def test_a_checkpoint_of_another_model_names_the_keys(replica, tmp_path):
    from cp_debug.models.centerpoint.source import load_model
    from tests.models.centerpoint.autoware_ml_replica import save_lightning_checkpoint

    ckpt = save_lightning_checkpoint(replica, tmp_path / "best.ckpt")
    with pytest.raises(CheckpointError, match=r"does not fit .*missing pts_backbone\.blocks\.0\.6\.weight"):
        load_model(str(TASKS / f"{REAL[1]}.yaml"), ckpt)  # layer_nums (3, 5, 5), not the tiny config's (1, 1, 1)


def test_the_cli_takes_a_yaml_config(tmp_path):
    from cp_debug.cli.common.options import model_record

    record = model_record("demo", TINY)
    from cp_debug.models.centerpoint.presets import get_preset

    assert record.model_name == str(TINY) and asdict(get_preset(record.model_name)) == asdict(read_yaml_config(TINY))
