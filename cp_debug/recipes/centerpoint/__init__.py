"""CenterPoint pipelines: ONNX export in AWML's interface, the staged pipeline with thin stage runners, detection
comparison, and the bisect subject; its `Recipe` in `recipe.py` and its part of fix, kit, lint and train in `fix/`,
`kit.py`, `lint.py`, `train.py` (recipe_contract/recipe.py; every plug-in of this folder:
`cp_debug/recipes/__init__.py`).

The resident pipeline (issue 32). On CUDA the staged pipeline keeps every value a torch tensor on the device
(`pipeline.py`'s resident run: voxelize, pillar features, scatter and decode's reductions there); runners declaring
`Capability.DEVICE_TENSORS` are fed and read through `infer_device` (torch: the module's tensors; ONNX Runtime: IO
binding, `backends/ort/ort_binding.py`, outputs handed to torch through the CUDA array interface). The sweep's CUDA
lanes compare their probes where they lie (`compare/device_diff.py`: the host kernel's arithmetic, only the figures
reach the host; on CUDA one fused Triton pass per probe, `compare/fused_diff.py`, every probe's figures reaching the
host in one copy) and read the next frames on helper threads (`SweepWorker.run_frames`), which also make each frame's
voxels and decorated features on the lanes' CUDA device, on a stream of their own, once for every lane there
(`pipeline.make_front`, `run_pipeline(front=...)`). ONNX Runtime candidates on the reference's CUDA device run beside
it, on a thread and a CUDA stream of their own (`SweepWorker._beside`; a torch candidate runs after it, since torch's
conv settings are process-wide while a torch runner runs), and each frame is compared and judged while the next
frame's reference network runs (`SweepWorker.run_frames` pipelined: `_run_lanes` hands
`run_pipeline(before_decode=...)` the previous frame's `_judge`, its comparisons on a high-priority stream of their
own); a bisect's do the same stage by stage (`bisect/stages/ahead.py`), and compare in the fused pass too, its first
kernel made on a helper thread while the model loads (`device_warm.warm_up_in_background`, with the plots' kernels;
the CUDA driver itself starts on a helper thread once torch is imported, `cuda_driver.py`, the backend check counting
GPUs through NVML). A warm-up never waits for the whole device: with CUDA's lazy loading (the default) a kernel's
first load may wait until every stream of the process is idle. The probes whose reference lies in the store's device
tier are compared a batch at a time (`stage_whole._OnDevice`: `diff_many`'s one copy), and their plots are left on
the device as material (`compare/device_plots.py`: a sample of the errors and the pooled heat map), made into JSON
only for those the report shows (the root causes and their segments' heat maps). FP16 conversions are kept in the
cache folder beside the exports (`precision/fp16_cache.convert_to_fp16_cached`, `graph/stored.py`), and so are INT8
quantizations, keyed by the graph and the calibration feeds (`precision/int8_cache.quantize_int8_cached`). The CPU
path is numpy as before; the resident run works on torch CPU tensors too, which is how the tests check it gives the
same numbers.
"""
