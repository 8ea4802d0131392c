"""The FP16 fix of a CenterPoint ONNX pair: the smallest set of nodes to keep in FP32 over a frame set.

Each experiment converts both AWML files with `precision.fp16.convert_to_fp16` (kept nodes in FP32 between explicit
Casts, the form a strongly typed TensorRT build takes) and runs the pair in ONNX Runtime through the staged
pipeline; the reference is the FP32 pair in ONNX Runtime on the same frames. The pairs run through one
`pair_runs.PairRuns`: what a candidate shares with an earlier run (the frames' fronts, an unchanged voxel encoder's
outputs, a pair run before) is not made again. Candidates are the nodes of both files, named `FILE:NODE`, ranked as
`cpdebug keep-fp32` ranks them (`bisect.cures.keep_fp32.rank_candidates`: nodes touching values near FP16's range first,
by the largest |x| in the FP32 reference on the ranking frame: the worst frame of a report, else the first), with
the nodes of the probes a bisect report blamed first of all. The converted models of the found set are the
artifact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

from cp_debug.errors import BadInputError
from cp_debug.data.frames import FrameSet
from cp_debug.fix.names import SEP, node_modules, per_file
from cp_debug.fix.search import FixSearch, search_fix
from cp_debug.recipes.centerpoint.fix.judge import HeadJudge
from cp_debug.fix.targets import FixTarget


@dataclass(frozen=True)
class Fp16Fix:
    """The search and the models: reference (FP32), plain (all FP16) and fixed (None when impossible), each
    {file name: ModelProto}; `modules` maps each kept FILE:NODE to its torch module (None where unknown); `runs`:
    the search's `pair_runs.PairRuns`, holding the reference's, the plain pair's and the fix's head maps on the
    search's frames (what verification on those frames takes instead of running them again)."""

    search: FixSearch
    reference: dict
    plain: dict
    fixed: dict | None
    modules: dict
    runs: object = field(default=None, compare=False, repr=False)


def fp16_candidates(cfg, models: dict, frames: FrameSet, indices: Sequence[int], first: Sequence[str] = (),
                    module_names: set[str] | None = None, modules: Mapping | None = None) -> list[str]:
    """FILE:NODE candidates of both files, ranked: nodes of `first` (module names a report blamed) first, then
    nodes touching |x| near FP16's range (largest first), then the compute nodes in file and execution order.
    The magnitudes are the FP32 reference's, over the frames `indices`. `modules`: FILE:NODE -> module where the
    nodes' own scopes do not say it (a deployed pair's, mapped as bisect maps it)."""
    from cp_debug.bisect.cures.keep_fp32 import absmax_by_name, rank_candidates
    from cp_debug.graph.session import run_all_outputs
    from cp_debug.graph.weight_store import import_graph
    from cp_debug.recipes.centerpoint.pipeline import run_pipeline

    absmax: dict[str, dict[str, float]] = {f: {} for f in models}
    enc_file, bb_file = list(models)
    for i in indices:
        res = run_pipeline(cfg, frames.frames[i].load(cfg).points, _Plain(models[enc_file]), _Plain(models[bb_file]))
        feeds = {enc_file: {"input_features": res.input_features}, bb_file: {"spatial_features": res.spatial_features}}
        for f, model in models.items():
            values = {**run_all_outputs(import_graph(model), feeds[f]), **feeds[f]}  # every tensor, one run
            for name, v in absmax_by_name(values).items():
                absmax[f][name] = max(absmax[f].get(name, 0.0), v)
    ranked = [(f, c) for f, model in models.items() for c in rank_candidates(model, absmax[f])]
    near = sorted((x for x in ranked if x[1].near_fp16_max), key=lambda x: -x[1].absmax)
    rest = [x for x in ranked if not x[1].near_fp16_max]
    keys = [f"{f}{SEP}{c.name}" for f, c in near + rest]
    if first:
        modules = modules if modules is not None else node_modules(models, module_names)
        blamed = [k for k in keys if any(m and (m == b or m.startswith(b + ".")) for b in first for m in [modules[k]])]
        keys = blamed + [k for k in keys if k not in set(blamed)]
    return keys


def find_fp16_fix(cfg, fp32_models: dict, frames: FrameSet, target: FixTarget, *, device: str = "cpu",
                  worst: int = 2, frame_order: Sequence[int] | None = None, first: Sequence[str] = (),
                  candidates: Sequence[str] | None = None, module_names: set[str] | None = None,
                  modules: Mapping | None = None, progress=None) -> Fp16Fix:
    """Search the FP16 fix of `fp32_models` ({VOXEL_ENCODER_FILE: model, BACKBONE_FILE: model}) over `frames`.

    first: module names to rank first (a bisect report's root causes). candidates: FILE:NODE keys instead of the
    ranked compute nodes. module_names: the torch model's qualified module names (for the set's module names);
    modules: FILE:NODE -> module instead of the nodes' scopes (a deployed pair: `names.mapped_node_modules`)."""
    from cp_debug.fix.figures import progress_step, step_printer
    from cp_debug.recipes.centerpoint.fix.pair_runs import PairRuns
    from cp_debug.precision.fp16 import convert_to_fp16

    files = list(fp32_models)
    every = range(len(frames))
    runs = PairRuns(cfg, frames, device)
    with progress_step(progress, f"FP32 reference on {len(frames)} frame(s)"):
        reference, _ = runs.heads(fp32_models[files[0]], fp32_models[files[1]], keep=True)
    cache: dict[tuple[str, frozenset], object] = {}

    def converted(keep: Sequence[str]) -> dict:
        out = {}
        for f, nodes in per_file(keep, files).items():
            key = (f, frozenset(nodes))
            if key not in cache:
                cache[key] = convert_to_fp16(fp32_models[f], keep_fp32_nodes=nodes)
            out[f] = cache[key]
        return out

    def heads(keep, indices):  # kept until its step is judged: the whole set's run takes the worst frames' heads
        models = converted(keep)
        return runs.heads(models[files[0]], models[files[1]], indices, keep=True)[0]

    passing: list[tuple[str, ...]] = []

    def forget(step) -> None:  # the heads kept: the plain pair's and the last passing set's (the fix, if any)
        keep = tuple(step.experiment)
        drop = [keep] if not step.passed else passing[-1:]
        if step.passed:
            passing[:] = [keep]
        for k in drop:
            if k:
                runs.forget(*(converted(k)[f] for f in files))

    if candidates is None:
        with progress_step(progress, "ranking the candidates (FP32 magnitudes)"):
            candidates = fp16_candidates(cfg, fp32_models, frames, list(frame_order or every)[:1], first,
                                        module_names, modules)
    else:
        known = {f"{f}{SEP}{n.name}" for f in files for n in fp32_models[f].graph.node}
        unknown = [c for c in candidates if c not in known]
        if unknown:
            raise BadInputError(f"candidate(s) {', '.join(unknown[:3])} are not FILE{SEP}NODE of the pair "
                                f"(e.g. {sorted(known)[0]})")
    judge = HeadJudge(cfg, frames, reference, target, heads, "fp16")
    printer = step_printer(progress)

    def on_step(step) -> None:
        forget(step)
        if printer is not None:
            printer(step)

    result = search_fix(candidates, judge, target, len(frames), worst=worst, frame_order=frame_order,
                        on_step=on_step)
    plain = converted(())
    # nothing kept: the fix is the plain pair itself, the same graphs (verification then runs them once)
    fixed = None if result.keep is None else plain if not result.keep else converted(result.keep)
    modules = modules if modules is not None else node_modules(fp32_models, module_names)
    return Fp16Fix(result, dict(fp32_models), plain, fixed, {k: modules.get(k) for k in result.keep or ()}, runs)


class _Plain:
    """An in-memory ModelProto run by one ONNX Runtime session (the ranking pass)."""

    def __init__(self, model):
        self.model = model

    def infer(self, feed):
        from cp_debug.graph.session import run_ort

        return run_ort(self.model, feed)
