"""The ground floor for ONNX graph work (floor 2), through onnx-graphsurgeon.

- `model`: load and check a model (one clear error), expose intermediate tensors as outputs, infer types and shapes,
  export like the original (IR version, opsets).
- `segment`: cut a segment between known tensors (by tensor names or by a range of topologically sorted nodes).
- `plan`, `grouped`: a stage's graph cut into segments at the probes (the lockstep's plan), and consecutive segments
  run as one session.
- `session`: run an in-memory model in a plain ONNX Runtime session (feeds cast to the declared types), and what a
  session is made from: bytes, a path, or the graph's bytes pointed at its stored weights.
- `onnx_files`: models of any size — the one place that knows a graph's size, writes it (past 2 GiB with its weights
  as onnx's external data, `NAME.onnx.data`), reads a file with its data files, hashes, copies and exports a graph
  without encoding its weights.
- `weight_store`: the weights of a model past 2 GiB kept in files while the process runs — the export's written once
  into its weights folder, a user's own used where they lie — read by graphsurgeon through `StoredValues`, their FP16
  copies made once.
- `stored`: an ONNX graph kept in a cache folder between processes (the export, FP16 and INT8 caches).
- `qdq_pair`: the Q/DQ pair a tensor is read through, read in one place (`QdqIndex.of(model).pair(...)`: its scale,
  zero point, its type's levels, axis, block size, clip ends, nodes, and whether its constants are initializers or
  `Constant` nodes) — every finding and cure that reads a Q/DQ file's pairs asks it.
- `masks`: the tensors that only reach softmaxes, comparisons and selections — attention masks, whose finfo.min fill
  saturates to -inf harmlessly in FP16.

Everything above (precision, probes, backends, bisect, the bug report) does its graph work here. This package imports
nothing of cp_debug but `cp_debug.errors`.

The ONNX ground floor is `cp_debug/graph/`, not `cp_debug/onnx/`: a folder named `onnx` (in the package or in
`tests/`) can shadow the `onnx` library whenever its parent lands on `sys.path`. Relative imports are banned (ruff
`TID252`), so every import names the package it reaches into.
"""
