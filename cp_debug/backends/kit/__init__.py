"""A kit's results read back from the target (`trt-*@KIT`): the folder's layout and manifest, its results, the runner
that replays them.

A runner that reads results instead of running (`kit_runner.py` over `kit_files.py` / `kit_results.py`: a kit's
results brought back from the target, `trt-*@KIT`), with the readers of TensorRT's tools' files in `backends/trt/`
(`trt_dumps_*.py`). The kit's layout, manifest and checks live in `kit_files.py`; the kit itself is written by
`cp_debug/kit/` (`cpdebug trt-kit`).
"""
