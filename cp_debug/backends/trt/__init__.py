"""TensorRT and TensorRT for RTX: the library found, the build planned and made, the engine run, and Polygraphy /
trtexec dumps read back.

`trt_runner.py`, one runner for `trt-*` and `trt-rtx-*`: the library and what differs between the two in
`trt_library.py`, the pure build decisions per version in `trt_plan.py`, one builder in `trt_build.py` — parse with
the failing node named, strongly typed, every unfused tensor a debug tensor, flags, profile —, one engine session in
`trt_engine.py` — deserialize, an engine the library refuses here as `EngineRefusedError`, the debug listener,
TensorRT-RTX's runtime cache —, profiles in `trt_profile.py`: `trt_library` → `trt_plan` → `trt_build` →
`trt_engine`, one builder and session for TensorRT and TensorRT-RTX.

One reader per producer of what TensorRT's tools write, for a `trt-*@KIT` backend (`backends/kit/`):
`trt_dumps_numpy.py` trtexec's numpy debug dumps and tensor_summary.json with its file-name mangling,
`trt_dumps_layer_info.py` `--exportLayerInfo`, `trt_dumps_outputs.py` `--exportOutput`, `trt_dumps_polygraphy.py`
polygraphy RunResults, over `trt_dumps_files.py` (what they share).
"""
