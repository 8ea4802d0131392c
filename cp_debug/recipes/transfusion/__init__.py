"""TransFusion-L: its deployment export (one ONNX file), its bisect subject, its frames, its proposal flips; its
`Recipe` in `recipe.py` and its part of fix, kit, lint and train in `fix.py`, `kit.py`, `lint.py`, `train.py`
(recipe_contract/recipe.py)."""
