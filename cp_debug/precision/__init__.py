"""Precision transforms of an ONNX graph (floor 4): FP16, INT8, FP8, NVFP4 / MXFP8, and the precision a file holds.

ONNX-level FP16 conversion (`fp16.py`; which nodes stay FP32 in `fp16_keep.py`, the cached conversion in
`fp16_cache.py`, the cached INT8 quantization in `int8_cache.py`; LayerNorm sites, fused or decomposed:
`layernorm.py`) and INT8 Q/DQ insertion (`int8.py`); FP8 (E4M3) Q/DQ as NVIDIA ModelOpt writes it (`fp8.py`); NVFP4
and MXFP8 emulated in float32 ONNX (`block_formats.py`: their rounding in numpy, the reference; `block_graph.py`: the
fake-quant subgraph; `block_quant.py`: the transform); the precision a file carries itself (`held.py`); a float16
graph as a GPU computes it, written as float32 for ONNX Runtime's CPU provider (`half_storage.py`), and float32
values rounded to the nearest float16 (`rounding.py`). FP16 conversions are kept in the cache folder beside the
exports (`fp16_cache.convert_to_fp16_cached`, `graph/stored.py`), and so are INT8 quantizations, keyed by the graph
and the calibration feeds (`int8_cache.quantize_int8_cached`).
"""
