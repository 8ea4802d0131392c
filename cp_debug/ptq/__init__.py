"""The PTQ workflow as CenterPoint teams run it, on the building blocks of `cp_debug.quant`: the stage tensors of
its scans (`scenes.py`; the scans are `data.frames`), quantize a model over calibration frames (`quantize.py`),
write its Q/DQ ONNX files (`qdq_files.py`) and the whole PTQ dir (`ptq_dir.py`), FP32 vs INT8 error on held-out
scenes (`int8_error.py`) and mAP (`map_eval.py`), rank layers by sensitivity and search the smallest FP32
exclusion set (`sensitivity.py`). It sits on the top floor because it drives recipes, bisect searches and scenes;
the backends and recipes use `cp_debug.quant` directly.
"""
