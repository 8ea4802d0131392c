"""What a recipe is, as the features below the recipes see it (floor 8): the `Recipe` contract (`recipe.py`) and the
`FrameModel` a recipe runs its frames through (`frame_model.py`). The recipes themselves (`cp_debug/recipes/`) stand
above every feature: the command line resolves one and hands it down; nothing here imports a recipe.

The contract (`recipe.py`: `Recipe`, the plug-in features' hooks `PLUGINS`; a `Recipe` pickles as its folder, so a
sweep's settings travel to Ray actors) and the `FrameModel` a recipe runs its frames through, with the
`StagedPipeline` over its stages (`frame_model.py`); the features take a `Recipe` handed down and import no recipe.
What a recipe provides, hook by hook, and how a fourth one is added: `cp_debug/recipes/__init__.py`.
"""
