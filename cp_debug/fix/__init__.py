"""`cpdebug fix`: from a divergence to a deployable, verified artifact.

The smallest set of nodes to keep in FP32 (FP16) or to leave out of INT8, searched with bisect's
`KeepFp32Search` (`search.py`) against a target over a frame set (`targets.py`); the ONNX pair, exclusion
lists, `fix.json` and a README written whole (`artifact.py`); `--check DIR` re-verifies a written fix on this
machine's toolchain (`check.py`). It stands above `ptq` (sensitivity ranking, PTQ) and everything below. A recipe's
part of it is the recipe's `fix` plug-in (`recipes/<name>/fix`, recipe_contract/recipe.py): `run.run_fix` asks it.
"""
