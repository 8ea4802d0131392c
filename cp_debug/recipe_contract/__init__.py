"""What a recipe is, as the features below the recipes see it: the `Recipe` contract (`recipe.py`) and the
`FrameModel` a recipe runs its frames through (`frame_model.py`). The recipes themselves (`cp_debug/recipes/`) stand
above every feature: the command line resolves one and hands it down; nothing here imports a recipe."""
