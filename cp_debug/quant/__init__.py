"""INT8 the way CenterPoint teams ship it: BN fusion, TensorQuantizer-style fake quantization with `_amax`
buffers (the pytorch-quantization / ModelOpt / AWML state-dict layout), calibration, PTQ checkpoints, Q/DQ
ONNX for TensorRT's explicit quantization, per-layer quantization error and sensitivity.

Entry points for the backends (ptq_checkpoint.py), from a `cpdebug quantize --out DIR`:
  ptq, model = fakequant_model_from_dir(DIR, cfg)   # torch-cpu-int8 / torch-cuda-int8: VoxelEncoderStage(model),
                                                    # BackboneNeckHeadStage(model), exactly like FP32
  ptq.voxel_encoder, ptq.backbone                   # ort-cpu-int8 / ort-cuda-int8 --int8 DIR: the Q/DQ ONNX files
Without a directory: build_fakequant_model(cfg, load_ptq_checkpoint(AWML_PTQ.pth, cfg)).
"""
