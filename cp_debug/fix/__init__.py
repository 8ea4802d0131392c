"""`cpdebug fix` (floor 11½): from a divergence to a deployable, verified artifact.

The smallest set of nodes to keep in FP32 (FP16) or to leave out of INT8, searched with bisect's `KeepFp32Search`
(`search.py`) against a target over a frame set (`targets.py`); the ONNX pair, exclusion lists, `fix.json` and a
README written whole (`artifact.py`); `--check DIR` re-verifies a written fix on this machine's toolchain
(`check.py`). It stands above `ptq` (sensitivity ranking, PTQ) and everything below. A recipe's part of it is the
recipe's `fix` plug-in (`recipes/<name>/fix`, recipe_contract/recipe.py): `run.run_fix` asks it.

Module by module: the smallest set to keep in FP32 / leave out of INT8 for a target over frames (`targets.py`;
`search.py` runs bisect's `KeepFp32Search` on the search driver, cheap rejection on the worst frames; CenterPoint's
pair judged by its fix plug-in's `recipes/centerpoint/fix/fp16.py` / `int8.py` with `precision.fp16` / `ptq`
sensitivity), verification of the written pair in ONNX Runtime (`verify.py`), the DIR written whole (`artifact.py`),
`--check DIR` against this machine's toolchain (`check.py`; the versions compared and their changes in
`toolchain.py`); any one-graph model (`fix --torch / --onnx`): its samples split into search and held-out
(`samples.py`), bisect's `KeepFp32Search` judged over every search sample for FP16 or INT8 exclusion and the written
file verified as it is (`module.py`; samples of several input shapes split and judged shape by shape:
`graph_verification.py`), the task metric (`--metric`, eval's) before and after with the samples that
change (`metric.py`), its DIR, README and `--check` (`module_files.py`).

The flow of one `cpdebug fix` (issue 23):
1. `cli/fix_cmd.py` builds a `fix.request.FixRequest` (the request, its checks and the user's options over a
   report's) (from scratch, or `--from-bisect REPORT`: its `ModelRecord`, candidate and root-cause path ranked first;
   or `--from-sweep DIR`) with a `fix.targets.FixTarget` (`--max-rel-rmse`, `--max-map-drop`, `--max-lost-boxes`);
   the request carries the model as a `ModelRecord`.
2. `fix/run.py` loads the model (INT8: PTQ through `ptq.ptq`, or a PTQ dir through `recipes.centerpoint.int8_source`;
   `ort-*-fp16@DIR`: the user's FP32 pair read, checked and mapped by `bisect.subjects.deployed.deployed_stages`,
   each node's module by `fix.names.mapped_node_modules`; `--scenes INFOS`: `data.frames.ScenesSet`, split into the
   search's frames and held-out verification frames) and held-out frames (`data.frames.HeldOutSet`, loaded once;
   their figures in `fix/figures.py`); `recipes/centerpoint/fix/fp16.py` (nodes of both AWML files, `FILE:NODE`,
   ranked by `bisect.cures.keep_fp32.rank_candidates` over the frames' FP32 magnitudes; each experiment converted by
   `precision.fp16` and run by ONNX Runtime) or `recipes/centerpoint/fix/int8.py` (layers ranked by
   `ptq.sensitivity`; each experiment the fake-quant stage with those layers off) hands a judge to `fix/search.py`,
   which runs `bisect.cures.search.KeepFp32Search` on the search driver: each step on the worst frames first (tol /
   lost boxes), then on all (`CheapFirst`).
3. `fix/verify.py` runs the FP32, plain and fixed ONNX pairs in ONNX Runtime over the frames (mAP/NDS, lost and added
   boxes, per-class AP change with a bootstrap interval, stage latency, each frame's outcome by the noise model:
   `fix/figures.frame_verdict`, which the search's judge uses too when the target is within precision). The run's
   result is a typed `fix.outcome.FixOutcome` (the set, the search, the verification, the versions) that the CLI
   renders; its `to_json()` is fix.json, and `fix/artifact.py` writes DIR whole.
4. `fix --check DIR` (`fix/check.py`) re-runs that verification and diffs the recorded versions with this machine's.
"""
