"""Detection-level evaluation: nuScenes metrics through nuscenes-devkit, submission files, detection diffs.

`session.run_eval` runs every backend over the scenes the way the recipe runs its frames: through its `FrameModel`
(`Recipe.runs_frame_model`), or, for a recipe whose frames run on a pipeline of its own (CenterPoint's pair), through
its `eval` plug-in (`recipes/<name>/eval`, recipe_contract/recipe.PLUGINS), whose hook is
- `run_backends(opts, specs, cfg, loaded, scenes, progress, step)`: every backend of `specs` (label -> `BackendSpec`,
  the reference first) over `scenes` (`data.frames.Frame`s) with the model `loaded` (`Recipe.load_model`'s) of config
  `cfg`, as `session.EvalOptions` `opts` asks (INT8, calibration, determinism), each one's progress through
  `progress(label, n)` and its slow steps through `step(text)`: (detections by label, each a token ->
  `boxes.SampleBoxes` mapping; seconds by label; notes by label; whether INT8 calibration feeds were made).
"""
