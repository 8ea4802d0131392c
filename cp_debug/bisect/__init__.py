"""The bisect engine (floor 7): where the candidates part from the reference, and why.

`BisectEngine(Subject, [BackendSpec])` → `BisectReport` (model: `ModelRecord`; facts: what ran, `ModelFacts`). Its
rooms, each with its own docstring:
- `stages/`: running the stages — whole or in lockstep, the probes recorded, local error, the screen of what the
  outputs hide, whether the model fits this machine;
- `findings/`: the diagnosis of a root cause — the op and the fault class, with the number each rests on;
- `cures/`: the search strategies and their one driver, the keep-FP32 search, the cure ladder;
- `subjects/`: what is bisected — the model cut into stages, its loaders and feeds, a `SPEC@DIR` candidate's deployed
  files, the facts of what ran.

Here beside them: `engine.py` (`BisectEngine`: orchestration and refinement), `run_state.py` (`RunState`: options,
probe specs, candidate states, tolerances, the reference store), `store.py` (the reference store within its memory
budget), `ranking.py` (first divergent, root cause), `look_inside.py` (a block that hides its layer), `verdict.py`
(results ordered, the hint and dominance note, the report), `result.py` (`BisectReport` and its JSON).

The flow of one `cpdebug bisect`:
1. `cli/bisect_cmd.py` (or the library's `cp_debug.bisect`) builds the request (`api/bisect_request.py`: the backends
   by `backends.spec`) and `api/bisect_run.py` a `Subject` from it (`bisect/subjects/loaders.py` for
   `--torch` / `--onnx`, `recipes/centerpoint/subject.py` for the built-in CenterPoint): stages, each with its torch
   module, its ONNX export (`export/`) and its probe map (`probes/`).
2. `bisect/engine.py` (`BisectEngine`) makes the shared `RunState` (`run_state.py`: options, probe specs, candidate
   states, tolerances, the reference store) and walks the stages in order. Where reference and candidate both run in
   ONNX Runtime (on the CPU; on one CUDA device `placement.device_whole` sends the pair through whole stages against
   the reference's probes in the store's device tier, read through IO binding), `stage_lockstep.py` runs the stage
   segment by segment (`lockstep.py`, cut by `graph/plan.py`; or, with `--lockstep-mode grouped` — and `auto`, the
   default, on a plan of 200 segments or more — consecutive segments in one session each: `lockstep_grouped.py`,
   `graph/grouped.py`); otherwise `stage_whole.py` runs it whole with the probes exposed, reference first (a torch
   reference streams its probes into the store, from CUDA through one page-locked buffer; twice: the noise floor,
   which a CUDA reference checks bit for bit on the device first, a batch of probes at a time where the store's
   device tier holds them, `device_twins.py`), then each candidate (an ONNX candidate in chunks of probes of at most
   1 GiB, INT8 ones whole), and `local_error.py` runs each probe's segment alone on the reference's boundary values
   (`graph/segment.py`). Where the reference's probes lie on a device (the store's device tier) and an ONNX Runtime
   candidate reads the same device, `ahead.py` runs the candidate's part on helper threads: its session made while
   the reference runs the stage, its run as soon as the reference's first run has filled the store, its local errors
   (`local_error.segment_errors`, which write nothing shared: `LocalErrors.apply` on the engine's thread) measured
   once the noise floor is known — the same values as one after the other (`BisectOptions.overlap=False`).
   `record.py` stores each comparison (`compare/`, its arithmetic shared out over threads by `cp_debug/parallel.py`)
   as it comes. `torch-cpu-fp16/bf16` runners emulate GPU FP16 arithmetic (`backends/pytorch/torch_emulation.py`). A
   `SPEC@DIR` candidate (the user's own deployed files) gets stage views from `bisect/subjects/deployed.py`: the file
   of each stage, its interface checked against the model (`probes/interface.py`), its tensors mapped onto our probe
   names by scope names or structure (`probes/foreign.py`), the nodes either graph has and the other lacks listed
   (`probes/graph_diff.py`); it runs whole stages (never lockstep) and its local errors are segments of its own file;
   where the root cause's segment holds such a node, `graph_blame.py` names it (`RootCause.nodes`). A file with other
   output names is read by order (`probes/interface.adopt_output_names`, said in the notes); a file that holds
   float16 runs as the FP16 candidate it is (`deployed.held_spec`: never converted again, judged at fp16, its
   overflow explained on its float32 twin, `precision/half_storage.widen_half`); Q/DQ files (INT8, FP8) are mapped
   through their DequantizeLinear weights and Q→DQ pairs and judged at the precision `precision/held.py` reads; an
   `*-int8@DIR` over a file already quantized is one line (exit 2), never quantized again. At such a file's root
   cause `qdq_file_why.py` reads the file's own scales against the reference's values (the range, and the outlier
   channels and quantized node that set it) and `qdq_exclude.py` says the cure in the producing tool's terms
   (ModelOpt's or ONNX Runtime's quantizer `nodes_to_exclude`, the tool told from the file), tried on the file with
   the Q/DQ feeding those nodes removed and judged by `compare/cure_judge.passes` ("verified" only where every
   output passes); an FP16 overflow between a ModelOpt file's Q/DQ pairs (its default high_precision_dtype='fp16') is
   said first, with `high_precision_dtype='fp32'` tried on the file widened to FP32.
3. `engine.py` ranks (`ranking.py`) and descends into the root cause's children (refinement), re-running only that
   stage — at a level the user did not give, with no root cause, into the layers of the block that brings the most
   error of its own where one of them may be beyond its budget (`look_inside.py`: a block's LayerNorm can hide it);
   `verdict.py` orders the results, writes the hint (`hints.py`) and dominance note and assembles the
   `BisectReport` (`result.py`).
4. `cli` renders it through `report/` (table, `--json`, `--csv`, `--html`) and, with `--bundle`, asks
   `bugreport/from_run.py` for the failing subgraph: cut, precision transform (`precision/`), window search, written
   whole by `bugreport/writer.py`.

How a stage runs in lockstep: `bisect/stages/__init__.py`; the search strategies: `bisect/cures/__init__.py`; the
`--backends` text from the command line to a runner: `backends/__init__.py`.
"""
