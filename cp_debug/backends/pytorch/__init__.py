"""The PyTorch runner: a module run eager at the precision asked (emulations of float16 storage, FP8, batch-norm
folding), its probes streamed as they are made.

`torch_runner.py` (the tensors it copies in `torch_tensors.py`); `torch-cpu-fp16/bf16` runners emulate GPU FP16
arithmetic (`torch_emulation.py`: half-precision storage, float32 accumulation); `torch-*-fp8` (`torch_fp8.py`); an
inference BatchNorm2d on CUDA with its rows as channels (`torch_batchnorm.py`).
"""
