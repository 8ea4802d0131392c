"""The named TransFusion-L presets, read from their one home: the config files shipped in `configs/NAME.py`.

As CenterPoint's presets (`centerpoint.presets`), the shipped files are AWML-syntax configs written with literals
only, read without mmengine by CenterPoint's literal reader (the `_base_` chain merged as mmengine merges it); a
name ending in `.py` is a user's AWML config file, read through mmengine (`config_file.read_config`). The T4 presets
stand for AWML's three T4 families, and the tests check that each reads as AWML's own file does.
"""

from __future__ import annotations

import functools
from pathlib import Path

from cp_debug.errors import BadInputError
from cp_debug.models.transfusion.config import TransFusionConfig

# The presets in the order people are shown them; each is the file configs/NAME.py.
PRESET_NAMES = ("transfusion-t4-90m-768", "transfusion-t4-nearby-50m-512", "transfusion-t4-offline-120m-768",
                "transfusion-demo", "transfusion-tiny")
# The AWML config file (projects/TransFusion/configs/t4dataset/...) each T4 preset stands for
AWML_CONFIGS = {
    "transfusion-t4-90m-768": "Transfusion-L/transfusion_lidar_pillar_second_secfpn_1xb1_90m-768grid-t4base.py",
    "transfusion-t4-nearby-50m-512":
        "Transfusion-L-nearby/transfusion_lidar_pillar_second_secfpn_1xb1_50m-512grid-t4xx1.py",
    "transfusion-t4-offline-120m-768":
        "Transfusion-L-offline/transfusion_lidar_pillar_second_secfpn_1xb1_120m-768grid-t4base.py",
}


def configs_dir() -> Path:
    """The folder of the shipped config files (cp_debug/models/transfusion/configs)."""
    from importlib.resources import files

    return Path(str(files("cp_debug.models.transfusion") / "configs"))


def as_config(preset: "str | TransFusionConfig") -> TransFusionConfig:
    """A TransFusionConfig as it is, else `get_preset(preset)`."""
    return preset if isinstance(preset, TransFusionConfig) else get_preset(preset)


def get_preset(name: str) -> TransFusionConfig:
    """The preset called `name`, or the model of the AWML config file `name` when it ends in `.py`."""
    if name.endswith(".py"):
        from cp_debug.models.transfusion.config_file import read_config

        return read_config(name)
    if name not in PRESET_NAMES:
        raise BadInputError(f"unknown TransFusion preset {name!r}: choose one of {', '.join(PRESET_NAMES)}, or give "
                            "an AWML TransFusion config file (.py)")
    return _shipped(name)


@functools.lru_cache(maxsize=None)
def _shipped(name: str) -> TransFusionConfig:
    from cp_debug.models.centerpoint.presets import _literal_file
    from cp_debug.models.transfusion.config_file import config_from_dict

    data = _literal_file(configs_dir() / f"{name}.py")
    return config_from_dict(data, name=name, description=str(data.get("cp_debug_description") or ""))
