"""The ground floor for ONNX graph work, through onnx-graphsurgeon.

- `model`: load and check a model (one clear error), expose intermediate tensors as outputs, infer types and
  shapes, export like the original (IR version, opsets).
- `segment`: cut a segment between known tensors (by tensor names or by a range of topologically sorted nodes).
- `session`: run an in-memory model in a plain ONNX Runtime session (feeds cast to the declared types).

Everything above (precision, probes, backends, bisect, the bug report) does its graph work here. This package
imports nothing of cp_debug but `cp_debug.errors`.
"""
