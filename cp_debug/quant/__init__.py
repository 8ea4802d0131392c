"""INT8 building blocks the way CenterPoint teams ship it (floor 5): BN fusion, TensorQuantizer-style fake quantization
with `_amax` buffers (the pytorch-quantization / ModelOpt / AWML state-dict layout), calibration, PTQ checkpoints,
the Q/DQ structure check, per-layer SQNR. They stand on `models` only, so the backends and the recipes can use them;
a recipe's own part (CenterPoint's BN fusion through its stage, its checkpoints checked against its fused structure:
`recipes/centerpoint/ptq_checkpoint.py`) and the workflow that drives them (quantize, sensitivity, compare:
CenterPoint's `ptq` plug-in, `recipes/centerpoint/ptq/`) stand above.

BN fusion by data flow, quantizers with `_amax`, calibration, PTQ checkpoints and dirs, Q/DQ structure check,
per-layer SQNR (used by `backends` and `recipes` for `--int8`). A judge that flips INT8 quantizers does it through
`quantizers.only_quantized` / `without_quantizers`, context managers that restore the state they found
(`quantizer_state`).

Entry points for the backends (CenterPoint's, from a `cpdebug quantize --out DIR`):

  ptq, model = fakequant_model_from_dir(DIR, cfg)   # torch-cpu-int8 / torch-cuda-int8: VoxelEncoderStage(model),
                                                    # BackboneNeckHeadStage(model), exactly like FP32
  ptq.graphs                                        # ort-cpu-int8 / ort-cuda-int8 --int8 DIR: the Q/DQ ONNX files

Without a directory: build_fakequant_model(cfg, load_ptq_checkpoint(AWML_PTQ.pth, cfg)).
"""
