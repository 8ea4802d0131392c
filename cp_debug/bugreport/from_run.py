"""`--bundle DIR`: the failing part of a bisect run as a standalone bug report that reproduces.

1. The root cause's segment (from the nearest known reference tensors to its tensor) is cut from the FP32 graph,
   put through the candidate's precision transform and run on the reference's boundary values. When it diverges
   there (a planted fault, a layer that dominates), it is shrunk when large (`window.shrink_segment`) and bundled.
2. When it stays within tolerance (the error accumulates over many layers), the window grows instead
   (`grow.grow_window`): the first divergent tensor is its output and its start moves upstream over the run's cut
   points until the candidate diverges on the reference's values; the smallest such window is bundled.
3. When even the whole stage on the reference's stage inputs stays within tolerance, the error came in with those
   inputs (an earlier stage): the stage is bundled with the candidate's own stage inputs, and the README says so.

What the candidate runs is what the bisect ran: the same transform and, for `ort-cpu-fp16` in lockstep, the
float16 rounding at every cut that the lockstep applied (`fp16_cuts.py`; ORT's CPU provider would not round).
`README.md` tells how the window was chosen, with its node count; `repro.py` exits 1 exactly when it reproduces.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cp_debug.compare.diff import TensorDiff
from cp_debug.errors import BadInputError
from cp_debug.graph.onnx_files import encoded

_SHRINK_ABOVE = 6  # nodes: larger diverging segments are shrunk to the smallest range that still diverges


class _Candidate:
    """The candidate's transform of an FP32 window (given its feed) and its run, as the bisect did them."""

    def __init__(self, engine, spec, providers, ctx=None):
        self.rs = engine.run_state
        self.spec, self.providers = spec, providers
        self.rounded = tuple(ctx.rounded) if ctx is not None else ()
        self.exposed = tuple(ctx.exposed) if ctx is not None else ()

    @property
    def emulates_cuts(self) -> bool:
        """ORT's CPU provider does not round what the lockstep rounded: emulate it (see fp16_cuts.py)."""
        return self.spec.precision == "fp16" and self.spec.device == "cpu" and bool(self.rounded)

    @property
    def emulates_storage(self) -> bool:
        """The bisect's whole-stage ort-cpu-fp16 run stored every float16 tensor as float16 (emulated: the default,
        `precision/half_storage.py`): the bundle's graph does the same, in explicit Cast pairs."""
        from cp_debug.backends.ort.ort_runner import half_mode

        return self.spec.precision == "fp16" and self.spec.device == "cpu" and half_mode() == "emulated"

    def make(self, model, feed: dict):
        spec = self.spec
        kw = self.rs.ort_kwargs(spec, model)
        if spec.precision == "fp16":
            if self.emulates_cuts:
                from cp_debug.bugreport.fp16_cuts import round_at_cuts

                return round_at_cuts(model, self.rounded, keep_fp32_nodes=kw.get("keep_fp32_nodes", ()))[0]
            if self.emulates_storage:
                from cp_debug.precision.half_storage import emulate_half_storage

                return emulate_half_storage(self.plain_fp16(model, exposed=True)).model
            return self.plain_fp16(model, exposed=True)
        names = {i.name for i in model.graph.input}
        calib = [{k: v for k, v in feed.items() if k in names}]  # the window calibrated on its own feed, as the run's
        if spec.precision == "int8":
            from cp_debug.precision.int8 import quantize_int8

            return quantize_int8(model, calib, exclude_nodes=kw.get("exclude_int8_nodes", ())).model
        if spec.precision == "fp8":
            from cp_debug.precision.fp8 import quantize_fp8

            return quantize_fp8(model, calib).model
        if spec.emulated:  # NVFP4 / MXFP8 written in float32 ONNX: the bundle's window runs on any ONNX Runtime
            from cp_debug.precision.block_quant import quantize_blocks

            return quantize_blocks(model, spec.precision, calib).model
        return model

    @property
    def session_options(self) -> dict | None:
        """The session settings the bisect's runner used beyond the defaults (INT8: exact integer products; FP8:
        graph optimisations off, `backends/ort/ort_precision.FP8_ORT_OPT_LEVEL`)."""
        from cp_debug.backends.ort.ort_runner import INT8_SESSION_CONFIG

        from cp_debug.precision.held import FLOAT8_GRAPHS

        if self.spec.precision in FLOAT8_GRAPHS:  # FP8, and the float8 Q/DQ that round NVFP4 / MXFP8 block scales
            return {"graph_optimization_level": "ORT_DISABLE_ALL"}
        return {"config_entries": dict(INT8_SESSION_CONFIG)} if self.spec.precision == "int8" else None

    def run(self, model, feed: dict) -> dict:
        from cp_debug.graph.session import cast_feed, run_ort

        return run_ort(model, cast_feed(model, feed), providers=self.providers, session_options=self.session_options)

    def plain_fp16(self, model, exposed: bool = False):
        """The FP16 conversion of `model`; with `exposed`, the tensors the bisect's whole-stage run exposed are
        outputs here too (before conversion, as the runner does): exposing a tensor changes what ORT computes."""
        from cp_debug.graph.model import expose_outputs
        from cp_debug.precision.fp16 import convert_to_fp16

        kw = self.rs.ort_kwargs(self.spec, model)
        if exposed and self.exposed:
            made = {t for n in model.graph.node for t in n.output}
            outs = {o.name for o in model.graph.output}
            extra = [t for t in self.exposed if t in made and t not in outs]
            model = expose_outputs(model, extra) if extra else model
        return convert_to_fp16(model, keep_fp32_nodes=kw.get("keep_fp32_nodes", ()))


@dataclass(frozen=True)
class Bundle:
    """A written bundle: its folder, and whether its candidate output diverges from the reference's there (what
    `repro.py` checks); `why` says what the README says when it does not."""

    path: Path
    reproduces: bool
    why: str = ""


def diverged(report, candidate: str | None = None) -> list:
    """The run's candidates with a root cause (only `candidate`'s, when named): what a bundle can hold. Empty on a
    healthy run, where `bisect --bundle` writes nothing and keeps the run's verdict (a CI job that always asks for a
    bundle passes a healthy run)."""
    return [c for c in report.candidates if c.root_cause is not None and candidate in (None, c.label)]


def bundle_from_run(engine, report, out_dir: str | Path, candidate: str | None = None,
                    make_tar: bool = False) -> Bundle:
    from cp_debug.backends.spec import BackendSpec

    cands = diverged(report, candidate)
    onnx_cands = [c for c in cands if BackendSpec.parse(c.label).runs_onnx]
    if not cands:
        raise BadInputError("no candidate diverged: there is nothing to bundle")
    if not onnx_cands:
        raise BadInputError("bundles hold an ONNX subgraph: bisect an ONNX backend (ort-…, trt-…) to make one")
    cand = onnx_cands[0]
    spec = BackendSpec.parse(cand.label)
    if spec.onnx_dir is not None:
        raise BadInputError(f"--bundle cuts cp_debug's own export, not the deployed files of {cand.label}: bisect "
                            f"without @DIR for a bundle, or cut {spec.onnx_dir} with the report's probe tensors")
    providers = (("CUDAExecutionProvider", "CPUExecutionProvider") if spec.device == "cuda"
                 else ("CPUExecutionProvider",))
    probe = cand.root_cause.probe
    ctx = engine.window_context(cand.label, probe)
    runner = _Candidate(engine, spec, providers, ctx)
    found = engine.root_cause_segment(cand.label, probe)
    if found is not None:
        bundle = _root_cause_bundle(engine, cand, probe, found, runner)
        if bundle is not None:
            return _write(out_dir, report, cand, make_tar, runner, *bundle)
    fd = cand.first_divergent or probe
    bundle = _grown_bundle(engine, cand, fd, probe, spec, providers)
    return _write(out_dir, report, cand, make_tar, runner, *bundle)


def _root_cause_bundle(engine, cand, probe, found, runner):
    """The root cause's segment when the candidate diverges on it (shrunk when large), else None."""
    from cp_debug.bugreport.window import diverges_beyond, shrink_segment
    from cp_debug.graph.model import expose_all
    from cp_debug.graph.segment import extract_segment
    from cp_debug.graph.session import run_ort

    stage, feed, tensor = found
    model = engine.subject.stages[stage].onnx()
    ref_out = engine.reference_value(probe)
    tol = engine.tolerance_for(cand.label, probe)
    seg = extract_segment(model, feed, [tensor], {tensor: ref_out.shape})
    subgraph = runner.make(seg, feed)
    cand_out = runner.run(subgraph, feed)
    diff = TensorDiff.from_arrays(tensor, ref_out, cand_out[tensor], tol)
    if diff.status == "ok":
        return None
    story = [f"The root cause `{probe}` diverges on its own: its segment ({len(seg.graph.node)} nodes), fed the "
             f"reference's values at its inputs, gives {diff.status} at `{tensor}` (max |diff| "
             f"{diff.max_abs:.3g}, {diff.share_beyond:.3%} of the elements beyond tolerance)."]
    inputs, refs = feed, {tensor: ref_out}
    spec = runner.spec
    if len(seg.graph.node) > _SHRINK_ABOVE and spec.precision in ("fp16", "int8", "fp8"):
        try:
            shrink_feed = dict(feed)
            if spec.calibrated:  # each cut is calibrated on the reference values at its boundary
                shrink_feed.update(run_ort(expose_all(seg), feed))
            small = shrink_segment(seg, lambda m: runner.make(m, shrink_feed), feed, diverges_beyond(tol),
                                   providers=runner.providers, session_options=runner.session_options)
            if len(small.nodes) < len(seg.graph.node):
                story.append(f"Shrunk from {len(seg.graph.node)} to {len(small.nodes)} nodes: the smallest "
                             f"contiguous range of them that still diverges ({small.evaluations} ranges run).")
                subgraph, inputs, refs, cand_out = small.candidate, small.inputs, small.reference_outputs, \
                    small.candidate_outputs
        except BadInputError:
            raise
        except Exception as err:  # shrinking is an improvement; the full segment is still a valid bundle
            story.append(f"Not shrunk: {type(err).__name__}: {err}")
    story += _fp16_story(runner, None)  # a root-cause segment: no probe inside it
    return subgraph, inputs, refs, cand_out, tol, story, {"probe": probe, "tensor": tensor, "stage": stage,
                                                          "window": "root cause segment"}, {}


def _grown_bundle(engine, cand, fd, rc, spec, providers):
    """The smallest window ending at the first divergent tensor that diverges on the reference's values, or
    (an earlier stage's error) the stage on the candidate's own inputs."""
    from cp_debug.bugreport.grow import STAGE_INPUT, grow_window

    ctx = engine.window_context(cand.label, fd)
    if ctx is None:
        raise BadInputError(f"the first divergent probe {fd!r} has no ONNX tensor to cut a window at")
    runner = _Candidate(engine, spec, providers, ctx)
    tol = engine.tolerance_for(cand.label, ctx.probe)
    model = engine.subject.stages[ctx.stage].onnx()
    stage_name = engine.subject.stages[ctx.stage].name
    growth = grow_window(model, ctx.target, ctx.reference, list(ctx.cuts), ctx.values, ctx.stage_inputs,
                         runner.make, runner.run, tol)
    why = "the error accumulates over many layers" if ctx.probe != rc else "the error builds up before it"
    story = [f"The root cause `{rc}` does not diverge on its own (its segment, fed the reference's values, stays "
             f"within tolerance): {why}. So the window keeps the first divergent "
             f"tensor `{ctx.target}` (probe `{ctx.probe}`) as its output and moves its start upstream over the "
             f"run's {len(ctx.cuts)} cut points in `{stage_name}` (binary search, the reference's values fed "
             "at the start) until the candidate diverges there.", *ctx.notes]
    story.append("Starts tried: " + "; ".join(t.line() for t in growth.trials) + ".")
    meta = {"probe": ctx.probe, "tensor": ctx.target, "stage": ctx.stage, "root_cause": rc,
            "trials": [t.__dict__ for t in growth.trials]}
    w = growth.found
    if w is not None:
        story.append(f"**This window starts at {'the stage inputs' if w.start == STAGE_INPUT else '`' + w.start + '`'} "
                     f"and holds {_nodes(w.nodes)}**: the smallest found whose output diverges "
                     f"({w.diff.share_beyond:.3%} of its elements beyond tolerance, max |diff| {w.diff.max_abs:.3g}).")
        meta["window"] = f"grown from {w.start}"
    else:
        whole = growth.whole
        own = {k: v for k, v in ctx.candidate_inputs.items() if k in whole.inputs}
        story.append(f"Even the whole stage `{stage_name}` up to that tensor ({_nodes(whole.nodes)}) on the "
                     "reference's stage inputs "
                     f"stays within tolerance (max |diff| {whole.diff.max_abs:.3g}, {whole.diff.share_beyond:.3%} "
                     "beyond): the error that crosses the tolerance came in with the stage's inputs, from an "
                     "earlier stage.")
        w = whole
        if own and set(own) == set(whole.inputs):
            cand_model = runner.make(whole.model, own)
            got = runner.run(cand_model, own)
            d = TensorDiff.from_arrays(ctx.target, ctx.reference, got[ctx.target], tol)
            drift = max(TensorDiff.from_arrays(k, whole.inputs[k], v).max_abs for k, v in own.items())
            verdict = ("diverges as the bisect saw" if d.status != "ok"
                       else "still stays within tolerance: NOT REPRODUCED")
            story.append(f"**This bundle feeds the stage ({_nodes(whole.nodes)}) the candidate's own stage inputs**, "
                         f"what its earlier stage(s) computed (max |diff| {drift:.3g} from the reference's): on them "
                         f"it {verdict} (max |diff| {d.max_abs:.3g}, {d.share_beyond:.3%} beyond tolerance). "
                         "`inputs.npz` holds the candidate's values, not the reference's; the earlier stage's error "
                         "is within tolerance by itself.")
            w.inputs, w.candidate, w.candidate_outputs = own, cand_model, {ctx.target: got[ctx.target]}
            meta["window"] = "whole stage on the candidate's own inputs"
        else:
            story.append("The candidate's own stage inputs are not known here: **this bundle does not reproduce** "
                         "the divergence.")
            meta["window"] = "whole stage, not reproduced"
    story += _fp16_story(runner, w, tol)
    extra, plain = {}, None
    if runner.emulates_cuts:
        plain = encoded(runner.plain_fp16(w.model))  # None past 2 GiB: left out
    if runner.emulates_cuts and plain is not None:
        extra["subgraph_fp16.onnx"] = (plain, "the plain FP16 conversion of the same window "
                                       "(what TensorRT or the CUDA EP would run; ORT's CPU provider computes it in "
                                       "float32)")
    return w.candidate, w.inputs, w.reference_outputs, w.candidate_outputs, tol, story, meta, extra


def _nodes(n: int) -> str:
    return f"{n} node{'s' if n != 1 else ''}"


def _fp16_story(runner: _Candidate, window, tol=None) -> list[str]:
    """On ort-cpu-fp16, say what really runs in this subgraph."""
    if runner.spec.precision != "fp16" or runner.spec.device != "cpu":
        return []
    if not runner.emulates_cuts and runner.emulates_storage:
        return ["On ort-cpu-fp16 the bisect stored every float16 tensor as float16 after its node, float32 arithmetic "
                "(as a GPU computes float16; ONNX Runtime's CPU provider alone would keep most activations in "
                "float32): `subgraph.onnx` is the FP16 conversion of the window with that rounding written into it "
                "as explicit Cast float32 → float16 → float32 pairs, a float32 graph any ONNX Runtime runs the same."]
    if not runner.emulates_cuts:
        lines = ["On ort-cpu-fp16 mind what really runs: `subgraph.onnx` is the FP16 conversion of the window, as "
                 "the bisect ran the stage. ONNX Runtime's CPU provider computes most of it in float32 on the float16 "
                 "weights (it drops the Cast pairs around its float32-only kernels) and rounds an activation to "
                 "float16 only where a node runs in float16 or the tensor is also an output."]
        if window is not None and len(window.candidate.graph.output) > 1:
            lines.append(f"So the tensors the bisect exposed as probes in this window are outputs of `subgraph.onnx` "
                         f"too ({len(window.candidate.graph.output) - 1} of them, not compared): without them ORT "
                         "computes other values than the bisect saw.")
        return lines
    lines = ["On ort-cpu-fp16 mind what really runs: the bisect ran this stage in lockstep and rounded every value "
             "crossing one of its cuts to float16 (as TensorRT or the CUDA EP hold them), while ONNX Runtime's CPU "
             "provider computes an FP16 graph mostly in float32 on the float16 weights, without those roundings. "
             "So `subgraph.onnx` is the window as the bisect computed it: the FP32 window with the weights the FP16 "
             "conversion rounds rounded to float16, and an explicit Cast float32 → float16 → float32 "
             "on every tensor the "
             "lockstep rounded: the cut tensors inside the window, its output, and its inputs where they are cuts "
             "(ORT keeps these pairs in a float32 graph)."]
    if window is not None:
        plain = runner.plain_fp16(window.model)
        got = runner.run(plain, window.inputs)
        t = next(iter(window.reference_outputs))
        d = TensorDiff.from_arrays(t, window.reference_outputs[t], got[t], tol)
        lines.append(f"`subgraph_fp16.onnx` is the plain FP16 conversion of the same window; on ORT's CPU provider "
                     f"it gives max |diff| {d.max_abs:.3g} ({d.share_beyond:.3%} beyond tolerance: {d.status}).")
    return lines


def _write(out_dir, report, cand, make_tar, runner, subgraph, inputs, refs, cand_out, tol, story, meta, extra):
    from cp_debug.bugreport.writer import write_bundle

    diffs = [TensorDiff.from_arrays(t, refs[t], cand_out[t], tol) for t in refs if t in cand_out]
    reproduces = any(d.status != "ok" for d in diffs)
    why = "" if reproduces else (f"the bundled window stays within tolerance when run alone on the reference's "
                                 f"values (max |diff| {max((d.max_abs for d in diffs), default=0.0):.3g}): the "
                                 "divergence needs the candidate's own values from before it")
    if why:
        story = [*story, f"NOT REPRODUCED: {why}."]
    settings = dict(report.settings)
    settings["bundle"] = {**meta, "nodes": len(subgraph.graph.node), "story": story, "reproduces": reproduces}
    return Bundle(write_bundle(out_dir, subgraph=subgraph, inputs=inputs, ref_outputs=refs, cand_outputs=cand_out,
                        candidate_label=cand.label, candidate_spec=cand.spec, report=report, tolerance=tol,
                        settings=settings, environment=report.environment, providers=runner.providers,
                        session_options=runner.session_options, make_tar=make_tar,
                        story=story, extra_files=extra), reproduces, why)
