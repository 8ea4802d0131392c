"""The generic module recipe as a `Recipe` (recipe_contract/recipe.py): any one-graph model given as `--torch FILE:FUNC`
or `--onnx FILE` (`model.py`), with its samples (`cp_debug/samples`: the sets, the noise model's judge, the task
metrics). It has no presets and no frames; sweep, eval and fix run it on their sample paths; its `kit` plug-in
(`kit.py`) writes the kit of any one graph (`cp_debug/kit/graph_kit.py`)."""

from __future__ import annotations

from cp_debug.recipe_contract.recipe import Recipe



def _load_module(torch_target, onnx_path, **options):
    from cp_debug.recipes.module.model import load_module_model

    return load_module_model(torch_target, onnx_path, **options)


RECIPE = Recipe(name="module", title="generic module", package="cp_debug.recipes.module", fix_from_reports=False,
                load_module=_load_module, plugins=frozenset({"kit"}))
