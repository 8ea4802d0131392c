"""Pure-PyTorch networks (floor 4): CenterPoint (`models/centerpoint/`) and TransFusion-L (`models/transfusion/`).

Pure-PyTorch CenterPoint (`models/centerpoint`: SECOND or ConvNeXt_PC, (Backward)PillarFeatureNet;
`CenterPointConfig` alone in `config.py`; the presets in one home, the config files under `configs/`, read by name
without mmengine in `presets.py`; a user's AWML/mmdet3d config file → `CenterPointConfig` in `config_file.py`; an
autoware-ml YAML config in `config_yaml.py` (`autoware_ml_names.py`: its checkpoint keys and module scopes);
`source.py`: `load_model`, the weights of a `ModelRecord`; `factory.py`: the contract of a `--model-factory`
(`UserCenterPoint`: the user's two modules and settings) and its checks, the subject that runs them being
`recipes/centerpoint/subject.factory_subject`). `models/transfusion/` stays beside `models/centerpoint/` (pure
PyTorch, floor 4; only recipes import it).
"""
