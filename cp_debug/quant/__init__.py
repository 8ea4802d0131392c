"""INT8 building blocks the way CenterPoint teams ship it: BN fusion, TensorQuantizer-style fake quantization
with `_amax` buffers (the pytorch-quantization / ModelOpt / AWML state-dict layout), calibration, PTQ
checkpoints, the Q/DQ structure check, per-layer SQNR. They stand on `models` only, so the backends and the
recipes can use them; the workflow that drives them (quantize, sensitivity, compare) is `cp_debug.ptq`.

Entry points for the backends (ptq_checkpoint.py), from a `cpdebug quantize --out DIR`:
  ptq, model = fakequant_model_from_dir(DIR, cfg)   # torch-cpu-int8 / torch-cuda-int8: VoxelEncoderStage(model),
                                                    # BackboneNeckHeadStage(model), exactly like FP32
  ptq.voxel_encoder, ptq.backbone                   # ort-cpu-int8 / ort-cuda-int8 --int8 DIR: the Q/DQ ONNX files
Without a directory: build_fakequant_model(cfg, load_ptq_checkpoint(AWML_PTQ.pth, cfg)).
"""
