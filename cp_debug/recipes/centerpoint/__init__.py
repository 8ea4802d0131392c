"""CenterPoint pipelines: ONNX export in AWML's interface, the staged pipeline with thin stage runners,
detection comparison, and the bisect subject; its `Recipe` in `recipe.py` and its part of fix, kit, lint and train in
`fix.py`, `kit.py`, `lint.py`, `train.py` (recipe_contract/recipe.py)."""
