from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_model(tiny_cfg):
    from cp_debug.models.centerpoint.model import build_model

    return build_model(tiny_cfg, seed=0)


@pytest.fixture(scope="session")
def scene(tiny_cfg):
    from cp_debug.lidar.synthetic import synthetic_scene

    return synthetic_scene(11, tiny_cfg)


@pytest.fixture(scope="session")
def onnx_dir(tmp_path_factory, tiny_model, tiny_cfg):
    from cp_debug.recipes.centerpoint.export import export_onnx

    out = tmp_path_factory.mktemp("onnx")
    export_onnx(tiny_model, tiny_cfg, out)
    return out
