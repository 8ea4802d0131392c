"""The ONNX Runtime runner: sessions and what they are made from, IO binding on CUDA, the precision a session ran, files
ORT refuses, sessions kept by the server.

`ort_runner.py` → `ort_session.py` (one session + its graph facts); its CUDA provider loaded ahead on a helper thread
(`ort_warm.py`); whether it loads a deployed file as it is written, from its path, with the cure where the cause is
known (`ort_load.py`: a refusal is exit 3 with ONNX Runtime's line, never run through an emulation); IO binding,
torch tensors in and out on the session's device (`ort_binding.py`: outputs handed to torch through the CUDA array
interface); the precision ONNX Runtime really ran (`ort_precision.py`); `ort_kept.py`: in `cpdebug serve`, a bisect's
runners' sessions (CPU and CUDA) kept for the next command under a key of what made them, with what they said; CUDA
arenas given back once the server idles (`server/resident.Server`'s `idle` step).
"""
