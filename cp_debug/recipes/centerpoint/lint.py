"""CenterPoint's part of `cpdebug lint` (its `lint` plug-in, recipes/contract.PLUGINS): the lint of a training
config, Autoware's parameter files and the deployed pair is lint's own (`lint/run.py`, over `lint/sources.py` and
`lint/checks.py`), the first model lint was written for; this module hands it to the features."""

from __future__ import annotations

from cp_debug.lint.run import lint  # noqa: F401 - the plug-in's `lint(request)`


def model_config(name: str):
    """The model config lint reads of preset or config file `name`."""
    from cp_debug.models.centerpoint.presets import get_preset

    return get_preset(name)
