"""Generic export of a torch module to ONNX (in memory, exporter warnings attributed to modules).

Below bisect and recipes: bisect's loaders export a user's module with it, and the CenterPoint recipe its stages.
Model-specific export (file names, stage splits) stays in `recipes/<model>/export.py`.
"""
