"""CenterPoint's `ptq` plug-in (recipe_contract/recipe.PLUGINS): the PTQ workflow as CenterPoint teams run it, on the
building blocks of `cp_debug.quant` and CenterPoint's INT8 model (`recipes/centerpoint/ptq_checkpoint.py`): the stage
tensors of its scans (`scenes.py`; the scans are `data.frames`), quantize a model over calibration frames
(`quantize.py`), write its Q/DQ ONNX files (`qdq_files.py`) and the whole PTQ dir (`ptq_dir.py`), FP32 vs INT8 error
on held-out scenes (`int8_error.py`) and mAP (`map_eval.py`), rank layers by sensitivity and search the smallest FP32
exclusion set (`sensitivity.py`). It stands on the ptq feature's floor (it drives eval's devkit metrics, bisect
searches and scenes); `cpdebug quantize` and `cpdebug sensitivity` reach it through `Recipe.plugin("ptq")`,
CenterPoint's own fix (`fix/int8.py`) by name.

The hooks `cpdebug quantize` / `cpdebug sensitivity` call (recipe_contract/recipe.PLUGINS["ptq"]):
  PtqSettings.parse(method, percentile, skip_layers, convtranspose) -> PtqSettings: the
    options checked before anything loads;
  calibrate_model(model_record, settings, calib_scenes, calib_n, *, step, bar) -> CalibratedModel: the model loaded
    and calibrated (`.run`: the PTQ run, `.summary()`: one line);
  write_ptq_dir(calibrated, settings, eval_scenes, map_scenes, out) -> dict: the PTQ dir written whole, its summary;
  held_out_evaluator(run, cfg, eval_scenes, map_scenes) -> Evaluator; layer_sensitivity(evaluator, layers, on_layer)
    -> SensitivityResult; exclusion_search(evaluator, ranked, tol, max_map_drop=) -> ExclusionResult.
"""

from cp_debug.recipes.centerpoint.ptq.ptq_dir import write_ptq_dir
from cp_debug.recipes.centerpoint.ptq.quantize import PtqSettings, calibrate_model
from cp_debug.recipes.centerpoint.ptq.sensitivity import exclusion_search, held_out_evaluator, layer_sensitivity

__all__ = ["PtqSettings", "calibrate_model", "exclusion_search", "held_out_evaluator", "layer_sensitivity",
           "write_ptq_dir"]
