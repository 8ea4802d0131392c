"""`cpdebug lint`: a training config, Autoware's parameter files and a deployed ONNX pair checked against each
other (`run.lint`), and the deployed pair's weights against the checkpoint's (`weights.py`); the same checks run
first in bisect, sweep and the other commands that are given those files."""
