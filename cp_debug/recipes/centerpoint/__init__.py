"""CenterPoint pipelines: ONNX export in AWML's interface, the staged pipeline with thin stage runners,
detection comparison, and the bisect subject."""
