"""The PTQ workflow as CenterPoint teams run it, on the building blocks of `cp_debug.quant`: quantize a model
over calibration scenes (`ptq.py`), write its Q/DQ ONNX files (`export.py`), compare FP32 with INT8 on
held-out scenes (`compare.py`), rank layers by sensitivity and search the smallest FP32 exclusion set
(`sensitivity.py`). It sits on the top floor because it drives recipes, bisect searches and scenes; the
backends and recipes use `cp_debug.quant` directly.
"""
