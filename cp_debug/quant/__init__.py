"""INT8 building blocks the way CenterPoint teams ship it: BN fusion, TensorQuantizer-style fake quantization
with `_amax` buffers (the pytorch-quantization / ModelOpt / AWML state-dict layout), calibration, PTQ
checkpoints, the Q/DQ structure check, per-layer SQNR. They stand on `models` only, so the backends and the
recipes can use them; the workflow that drives them (quantize, sensitivity, compare) is `cp_debug.ptq`.

Entry points for the backends (see ptq_checkpoint.py): `read_ptq_dir(DIR)` gives the checkpoint and the two
Q/DQ ONNX files of a `cpdebug quantize --out DIR`; `build_fakequant_model(cfg, load_ptq_checkpoint(...))` the
fake-quant torch model whose stages run like the FP32 ones.
"""
