"""`cpdebug eval` (floor 10): detection-level evaluation — nuScenes metrics through nuscenes-devkit, submission files,
detection diffs.

Evaluation per backend over scenes: the recipe's pipeline (its `FrameModel`, or its `eval` plug-in), nuscenes-devkit
metrics, results-format files, detection diff, diagnoses, the verdict per candidate by the noise model
(`verdict.py`), eval HTML; any one-graph model's task metric per backend over its samples with bootstrap intervals
and the changed samples (`samples.py`).

`session.run_eval` runs every backend over the scenes the way the recipe runs its frames: through its `FrameModel`
(`Recipe.runs_frame_model`), or, for a recipe whose frames run on a pipeline of its own (CenterPoint's pair), through
its `eval` plug-in (`recipes/<name>/eval`, recipe_contract/recipe.PLUGINS), whose hook is
- `run_backends(opts, specs, cfg, loaded, scenes, progress, step)`: every backend of `specs` (label -> `BackendSpec`,
  the reference first) over `scenes` (`data.frames.Frame`s) with the model `loaded` (`Recipe.load_model`'s) of config
  `cfg`, as `session.EvalOptions` `opts` asks (INT8, calibration, determinism), each one's progress through
  `progress(label, n)` and its slow steps through `step(text)`: (detections by label, each a token ->
  `boxes.SampleBoxes` mapping; seconds by label; notes by label; whether INT8 calibration feeds were made).

The flow of one `cpdebug eval` (issue: evaluation):
1. `cli/eval_cmd.py` → `eval/`: frames from `data/frames.py` (an info file's samples, or held-out seeds).
2. Each backend runs the staged pipeline (`recipes/centerpoint/pipeline.py` with `stage_runners.py`: the runners of
   `backends/`) per scene; boxes are decoded (`models/centerpoint/decode.py`).
3. `eval/` turns the boxes into nuscenes-devkit's format and computes its metrics (mAP, NDS) per backend, and the
   detection diff against the reference backend (`lidar/compare_detections.py`).
4. `eval/verdict.py` judges each candidate's boxes scan by scan by the noise model (`compare/noise.judge_boxes`, at
   the coarser precision of reference and candidate): within precision, degraded or diverged, with its mAP/NDS
   change.
5. `cli` prints the metrics table and the verdicts, writes the JSON and exits by the gates, then the worst verdict.
"""
