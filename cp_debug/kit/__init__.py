"""A kit for the target (floor 9; `cpdebug trt-kit`, issue 31).

The reference run over the frames, the ONNX pair (and the precision copies cp_debug's transform makes), every stage's
inputs as `trtexec --loadInputs` / `polygraphy --load-inputs` read them, the reference's outputs for
`--loadRefOutputs`, the trtexec / polygraphy scripts and README (`scripts.py`: every flag checked against TensorRT's
`sampleOptions.cpp` 10.0–11.1 and polygraphy 0.49–0.53's argument groups by `tests/kit/test_kit_sources.py`, over the
facts `benchmarks/trt_sources.py` reads out of those sources into `tests/data/trt_sources/`), written whole
(`writer.py`; what a kit holds, `content.py`); its layout, manifest and checks live in `backends/kit/kit_files.py`,
read back by `backends/kit/kit_runner.py` (`trt-*@KIT`). A recipe's part is its `kit` plug-in (what a kit holds:
`content` → `KitContent`, …; `cp_debug/recipes/__init__.py`); any `--torch` / `--onnx` model's content, its samples
and trtexec's min/opt/max shapes is `graph_kit.py` (the module recipe's plug-in loads the model and hands it here).
Two kits' results of one file compared with each other, the first layer that moved named (`bisect --backends
trt-fp16@KIT_A,trt-fp16@KIT_B`): `targets.py` (issue 110).
"""
