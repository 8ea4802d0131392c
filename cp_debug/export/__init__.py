"""Generic export of a torch module to ONNX (floor 3; in memory, exporter warnings attributed to modules).

Below bisect and recipes: bisect's loaders export a user's module with it, and the CenterPoint recipe its stages.
"Export" names three jobs in cp_debug, one place each:

  * here: any torch module -> an in-memory ModelProto, for bisect (`torch_export.py`), kept between processes by
    a content hash of the module, its weights and the export settings (`cache.py`, the user's cache folder), with
    the inputs' dynamic axes where a model has any (`dynamic.py`: `--dynamic`, a file's `dynamic()`, or inferred from
    the samples' shapes; one typed `DynamicAxes` for every command that exports or builds at several shapes);
  * `recipes/centerpoint/export.py`: the CenterPoint ONNX pair written as AWML deploys it (`cpdebug export`);
  * the PTQ workflow (CenterPoint's `ptq` plug-in, `recipes/centerpoint/ptq/`): that pair with the quantizers on,
    the Q/DQ files of `cpdebug quantize`, whose structure `quant/qdq_check.py` checks.
"""
