"""The generic module recipe as a `Recipe` (recipes/contract.py): any one-graph model given as `--torch FILE:FUNC`
or `--onnx FILE` with its samples (`model.py`, `samples.py`), judged by the noise model (`judge.py`) and a task
metric (`tasks.py`). It has no presets and no frames; sweep, eval and fix run it on their sample paths."""

from __future__ import annotations

from cp_debug.recipes.contract import Recipe

RECIPE = Recipe(name="module", title="generic module", package="cp_debug.recipes.module", fix_from_reports=False)
