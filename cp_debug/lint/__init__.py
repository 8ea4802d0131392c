"""`cpdebug lint` (floor 6½): a training config, Autoware's parameter files and a deployed ONNX pair checked against
each other (`run.lint`), and the deployed pair's weights against the checkpoint's (`weights.py`); the same checks run
first in bisect, sweep and the other commands that are given those files.

Below the CLI: the facts of a training config, Autoware's parameter files (read by `data/autoware_params.py`) and a
deployed pair under one set of names, each with where it came from (`sources.py`: `Facts`; each recipe's facts in its
`lint` plug-in, `recipes/<name>/lint_sources.py`), compared (`checks.py`: `agree`, the voxel caps; each recipe's list
of checks in its `lint.py`) into typed `LintFinding`s and a `LintReport` (`findings.py`); the voxel cap against a
frame's pillars (`voxel_cap.py`); a deployed file's weights against the model's, raw, transposed or BN-folded, and
the FP16 converters' clamps (±1e4, 1e-7) counted as the model's weights and said with their numbers (`weights.py`,
called by `bisect/subjects/deployed.py` before any stage runs); `run.lint_before_run`: what bisect, sweep and replay
run first, given the run's recipe's `lint` plug-in. `lint` takes the plug-in as an argument
(`lint_reports_before_run(…, linter)`) from its callers above (the CLI), `LintRequest` holding no recipe.
"""
