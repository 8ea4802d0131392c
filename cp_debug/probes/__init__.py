"""Probes (floor 6): module traces and module ↔ ONNX tensor names.

The module trace (`torch_trace.py`, kept on disk by `trace_cache.py`) and the one name table, module qualified name ↔
ONNX tensor from the exporter's own scopes (`naming.py`); a foreign graph mapped onto them (`foreign.py`; its
interface checked against the model's stage, `interface.py`; a structurally mapped probe's shapes checked,
`probe_shapes.py`, at a second input size that tells axes apart, `sized_shapes.py`; a quantized file read as the
float computation it stands for — dynamic INT8's MatMulInteger / ConvInteger, ORT's fused DynamicQuantizeMatMul /
MatMulIntegerToFloat and transformer fusions, QOperator's QLinear* with a DequantizeLinear view of an integer-only
tensor, a Gather of a uint8 embedding: `quantized_forms.py`; static Q/DQ pairs on activations, `qdq_pairs.py`) paired
node by node across the Casts and Q/DQ pairs a precision inserts and a commutative op's other input order
(`node_pairs.py`), and the nodes with no counterpart on either side, an exporter's forms of weights and shapes and a
module's own rewrite told apart from a change of the computation (`graph_diff.py`); every name a user gives for a
node (node, tensor, `module/Op`, module) read back to node names, and a node shown as `module: node`
(`node_names.py`).
"""
