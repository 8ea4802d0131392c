"""Model recipes, each one folder (floor 11⅞, just below the command line): the registry and the recipes themselves.

The registry is `catalog.py`, the one list of recipes. `recipes/centerpoint`: subject, pipeline, stage runners,
export; boxes matched, each turn with its own conditioning; its plug-ins `fix/` (with the pair's runs, judge and
verification), `kit.py`, `lint.py`, `train.py`, `sweep/` (its lanes and frame loop), `eval/` (its backend pipeline),
`replay.py`, `bench.py`, `ptq/` (the PTQ workflow on `quant`'s blocks: quantize over calibration scenes, write the
Q/DQ files, FP32 vs INT8 on held-out scenes, sensitivity and the exclusion search), `infer.py`;
`recipes/transfusion`: TransFusion-L's subject, one-graph export, frames, proposals, and its plug-ins; its plug-ins
import their features down; a plug-in keeps off the features beside its own (pyproject.toml); `recipes/module`: the
generic module recipe — any one-graph model (`--torch` / `--onnx`) loaded and exported once with each backend's
runner built from it (`model.py`; `Recipe.load_module`, reached through `catalog.of_any_model()`); the command line
resolves the run's recipe here (`catalog.recipe`, `recipe_of_config`, `of_any_model`) and hands its `Recipe` down: no
package below imports `recipes` (a forbidden contract in pyproject.toml).

A recipe is one folder (issue 70, item 5). A recipe is a kind of model: CenterPoint (`recipes/centerpoint/`),
TransFusion-L (`recipes/transfusion/`) and the generic module recipe (`recipes/module/`, any `--torch` / `--onnx`
model with its samples). Each is one `Recipe` (`recipe_contract/recipe.py`, a frozen dataclass of hooks, built in its
folder's `recipe.py`; building it loads nothing), and `recipes/catalog.py` is the registry: the one place that lists
them (name → folder), the default (`DEFAULT`), the names `--recipe` takes (`built_in()`, which
`cli/common/options.recipe_name` reads), `recipe(name)`.

Handed down, not looked up (issue 85, item 5). Only the command line looks a recipe up: from `--recipe`, the config's
`model.type` (`catalog.recipe_of_config`), the model given (`catalog.of_any_model()` for `--torch` / `--onnx`), or
the name a stored document holds (a fix.json for `fix --check`, a kit's `--fix` folder); it hands the `Recipe` down
as a field or an argument — `SweepSettings.recipe`, `EvalOptions.recipe`, `FixRequest.recipe`, `KitRequest.recipe`,
`BenchOptions.recipe`, `run_replay(recipe=…)` with `ReferenceRunner`'s replay plug-in, train's `Detector`, a budget's
head outputs (`read_budget(path, heads)`) — as Polygraphy's argument groups build a runner once and HF's `AutoModel`
resolves a family once at the top. sweep, eval, fix, kit, train, replay, bench and the server import nothing of
`cp_debug.recipes` at any depth, in a function or not (pyproject.toml's forbidden contract "the recipe is handed
down"), and none compares a recipe's name or imports TransFusion-L's folder or `models/transfusion`
(`tests/recipes/test_contract.py` checks both, over the code of every package but `recipes/` and `models/`, and that
every registered recipe provides every hook). A `Recipe` pickles as its folder (`__reduce__`), so the settings a
sweep ships to its Ray actors carry the same object.

What a recipe provides (its `Recipe`; a hook it lacks is None, and the feature says so in one line):
- how its model is loaded: `model_types()` (the config `model.type`s its reader builds: `catalog.recipe_of_config`
  picks the recipe of a `--config` file), `preset_config(name)`, `check_model(record)` (an unknown preset said before
  torch loads), `load_model(record)`, `weights_label(record)` (what it will load, in words), `default_preset`; a
  one-graph `--torch` / `--onnx` model: `load_module(...)` (the module recipe's; `catalog.of_any_model()` finds it);
- its frames and stage graphs: `frame_model(...)` (a `FrameModel`, `recipe_contract/frame_model.py`, through which
  sweep's staged lanes and eval run its frames; None where its frames run on a pipeline of its own: CenterPoint's),
  `frame_subject` (one frame's bisect subject: sweep's bisects of the worst frames),
  `bisect_subject(record, points=…)` and `check_bisect(record, pairs)` (`cpdebug bisect`), `sweep_level`;
- its deployment: `graph_files` (the ONNX files in stage order), `export_files(loaded, out, …)` (`cpdebug export`),
  `infer_scan(loaded, points, device)` (`cpdebug infer` end to end in torch; None: stage by stage with a backend
  each, `infer_stages(...)`: stage by stage with a backend each, CenterPoint's pair), `head_outputs` (its head maps,
  which a budget's `max_head_error` limits), `box_cut(cfg)` (where its deployment cuts boxes by score);
- which options of the default recipe each command refuses for it (`refuses`, said by
  `cli/common/preflight.refuse_options`), whether a bisect report or a sweep of it starts a fix (`fix_from_reports`),
  whether `keep-fp32` of it is its fix's search (`keep_fp32_is_fix`);
- its part of the features, as plug-in modules of its folder named after the feature
  (`recipe_contract/recipe.PLUGINS` lists each feature's hooks; `Recipe.plugins` the features the folder has;
  `Recipe.plugin(feature)` imports it): `fix.py` or a package `fix/` (`needs_devkit`, `check_request`, `run_fix` →
  `FixOutcome`, `check_fix` for `fix --check`; CenterPoint's is a package, its FP16 and INT8 searches of the pair in
  `fix/fp16.py`, `fix/int8.py`), `kit.py` (what a kit holds: `content` → `KitContent`, `model_config`, `check_model`,
  `precisions`, `DEPLOYED_FILES`, `LINTS_FIX`, the read-back `bisect_command`, `readme_text`, `BISECT_SUFFIX`),
  `lint.py` (`model_config`, `lint` → `LintReport`), `train.py` (`detector()` → `train.detectors.Detector`: preset,
  training and eval model, batch losses, detect, `load_checkpoint`), `sweep/` (`subject`, `stage_bytes`,
  `with_stages`, `make_worker`: a recipe whose frames run on lanes of its own), `eval/` (`run_backends`),
  `replay.py`, `bench.py`, `ptq/` (the hooks of `PLUGINS`; CenterPoint's are the only ones today, below).

The floors. The contract (`recipe_contract/`, floor 8) stands below the features that take a `Recipe`; the recipes
(floor 11⅞) stand above them all, just below the command line. A plug-in uses its feature's helpers (fix, train, kit
…), and it is filed in the recipe's folder so that a recipe stays one folder: its imports run down. The feature
defines the hook (its signature and types: `FixRequest`/`FixOutcome`, `KitRequest`/`KitContent`, `Detector`), the
recipe's module implements it, and the feature reaches it only through the recipe (`Recipe.plugin`, an import by the
conventional name when first asked — as HF transformers' auto mappings and mmengine's registry reach a family's
module — never an `import` of the folder). The layers contract ignores no import (until issue 85 it ignored the
plug-ins' imports of their feature, which ran up while `recipes` stood below the features), and one forbidden
contract per feature keeps each plug-in off the features beside its own ("a recipe's plug-in stands on its feature's
floor": a kit plug-in imports nothing of eval, sweep, fix, …; a fix plug-in nothing of the CLI or the server). `lint`
takes the plug-in as an argument (`lint_reports_before_run(…, linter)`) from its callers above (the CLI),
`LintRequest` holding no recipe.

A fourth recipe is one folder `recipes/<name>/` with `recipe.py` (its
`RECIPE = Recipe(name=…, title=…, package="cp_debug.recipes.<name>", plugins=…, …hooks)`), the plug-in modules of the
features it runs (`fix.py`, `kit.py`, `lint.py`, `train.py`, each with the hooks of `PLUGINS[feature]`), its own
modules beside them (subject, export, frames …; its pure-PyTorch network may live in `models/<name>/`), and one line
in `catalog._FOLDERS`. `tests/recipes/test_contract.py` then checks it keeps the contract.

Nothing generic names a recipe. What both LiDAR recipes share is no recipe's and lives in `cp_debug/lidar` (points,
voxels, boxes and their matching `compare_detections.py`, synthetic scans, `ModelRecord`, `LidarConfig`); any model's
samples, judge and metrics in `cp_debug/samples`; safe pickles in `cp_debug/pickles.py`. What is CenterPoint's alone
is a plug-in of its folder, reached through `Recipe.plugin(feature)`: its sweep lanes and frame loop (`sweep/`:
`lanes.py`, `worker.py`; hooks `subject`, `stage_bytes`, `with_stages`, `make_worker`, reached by
`SweepSettings.lanes()` in process and in Ray actors), its eval pipeline (`eval/`: `backend_pipeline.py`; hook
`run_backends`, asked by `eval/session.run_eval` where the recipe runs no `FrameModel`), its replay of Autoware's
node (`replay.py`: `stage_runners`, `run_scan`, `decode`, `compare_detections`, `AUTOWARE_NODE`: the node whose
`--params` it reads), its bench rows (`bench.py`: `STAGES`, `BackendPipeline`, `int8_calibration`), its PTQ (`ptq/`,
the former `cp_debug/ptq`: `PtqSettings`, `calibrate_model`, `write_ptq_dir`, `held_out_evaluator`,
`layer_sensitivity`, `exclusion_search`; BN fusion and PTQ checkpoints of its network in `ptq_checkpoint.py`, the
generic layout staying in `quant/`), its training losses and `detect` (`train.py`; `Detector` gained
`load_checkpoint`), the pair's verification (`fix/`: `pair_runs.py`, `judge.py`, `verify.py`), and `cpdebug infer`'s
stage-by-stage run (`infer.py`, the `Recipe.infer_stages` hook). The hooks' contracts are written in the feature's
package (`sweep/__init__.py`, `eval/__init__.py`, …) and listed in `recipe_contract/recipe.PLUGINS`. `report/bev.py`
takes the decode and head names from the caller (`BevScene` carries the subject's). `bench`, `quantize` and
`sensitivity` take `--recipe` and ask it for their plug-in (a recipe without one: one line, exit 2); `replay` (of
Autoware's CenterPoint node) and `scenes` take the default recipe (`catalog.recipe()`, resolved by their commands),
and the budget's `max_head_error` limits the default recipe's head maps (`Recipe.head_outputs`, handed to
`read_budget`). `tests/recipes/test_contract.py` checks that no module outside `recipes/` and `models/` imports any
recipe's folder or network by name, CenterPoint's included. `models/transfusion/` stays beside `models/centerpoint/`
(pure PyTorch, floor 4; only recipes import it). Autoware's nodes are their recipes' tables:
`data/autoware_params.read_params(paths, node)` reads any node's files, and the node (`AutowareNode`: its name and
the parameter groups it declares, which tell its files) is the recipe's — CenterPoint's with the node's fixed sizes
in `recipes/centerpoint/autoware_node.py` (its lint; `cpdebug replay`'s glue through its replay plug-in's
`AUTOWARE_NODE`), TransFusion-L's in `recipes/transfusion/lint_sources.py` beside the node's constants (its lint and
kit).
"""
