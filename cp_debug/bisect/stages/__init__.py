"""Running a bisect's stages: the reference and each candidate whole or in lockstep, segment by segment, their probes
recorded as they come, local error on the reference's boundary, the screen of what outputs hide, whether a model fits
the machine.

Whether the model fits this machine, said before the work (`fits.py`: what a bisect holds for its backends against the
host's available and the GPU's free memory, exit 3); stage execution (whole: `stage_whole.py`; lockstep:
`stage_lockstep.py`, `lockstep.py`, `lockstep_grouped.py`, below); where a whole-stage run's probe values lie
(`placement.py`: the store's device tier, which side binds or compares on the device); the noise floor checked bit for
bit on the device (`device_twins.py`); a stage's runner with its probes (`stage_runner.py`); candidates run ahead on
helper threads (`ahead.py`); a candidate whose library builds but will not run here (`refused.py`); local error
(`local_error.py`; a quantized file's integer boundaries fed quantized by the file's own scale: `segment_held.py`; a
kit's segments, and every runner standing in for another: `stand_in.py`); each comparison stored as it comes
(`record.py`). NaN/Inf, all zeros or a large relative error that a stage's outputs hide (a guard, a residual) screened
after an FP16/BF16 ONNX Runtime candidate found nothing, the modules on its path then measured (`screen.py`; the error
read from random projections of every tensor, in the candidate's run and in FP32's: `screen_sketch.py`; for a CUDA
candidate its runs started on a helper thread as soon as the stage's feeds are known, beside the stage's own:
`screen_ahead.py`).

Lockstep execution. Where the reference and a candidate both run in ONNX Runtime on the CPU, a stage runs in lockstep
(on one CUDA device the pair runs whole stages instead, the probes compared on the GPU: `placement.device_whole`;
`--device-budget 0` keeps the lockstep there) (`lockstep.py`): the graph is cut after every probe, and segment by
segment the reference runs, then each candidate on its own upstream values (propagated error) and on the reference's
(local error); probes are compared as they come out and every tensor is dropped once no later segment reads it.
Values a candidate computes bit-identically to the reference share the reference's array (no copy, no arithmetic, and
the local run is the propagated one — that is what makes `ort,ort` cheap); the noise floor (the reference's second
run) is measured only in segments where a candidate is off. FP16 candidates' values cross every cut in float16, as an
FP16 graph holds them: their segments take and return float16 (a CUDA lane with nodes kept in FP32 keeps float32
edges and is rounded at the cut instead), and all segment sessions share one host arena kept by ONNX Runtime's
environment (`session.use_env_allocators`). A lane drops the inputs no later segment reads before its local run, and
a float16 lane's local feed is converted into the dropped array (`lane_values.half_feed`). Where a side is PyTorch or
TensorRT the stage still runs whole with its probes exposed (reference values kept, spilled to disk past
`memory_budget_mb`). Comparisons run in one compiled pass per tensor (`compare/kernels.py`); float32 ↔ float16
conversions go through ONNX Runtime's Cast (`half.py`).

The bisect's part of the resident pipeline (`recipes/centerpoint/__init__.py`): an ONNX Runtime candidate on the
reference's CUDA device runs stage by stage beside it (`ahead.py`) and compares in the fused pass; the probes whose
reference lies in the store's device tier are compared a batch at a time (`stage_whole._OnDevice`: `diff_many`'s one
copy).
"""
