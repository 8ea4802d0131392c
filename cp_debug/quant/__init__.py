"""INT8 the way CenterPoint teams ship it: BN fusion, TensorQuantizer-style fake quantization with `_amax`
buffers (the pytorch-quantization / ModelOpt / AWML state-dict layout), calibration, PTQ checkpoints, Q/DQ
ONNX for TensorRT's explicit quantization, per-layer quantization error and sensitivity.

Entry points for the backends (see ptq_checkpoint.py): `read_ptq_dir(DIR)` gives the checkpoint and the two
Q/DQ ONNX files of a `cpdebug quantize --out DIR`; `build_fakequant_model(cfg, load_ptq_checkpoint(...))` the
fake-quant torch model whose stages run like the FP32 ones.
"""
