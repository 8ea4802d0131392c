"""`--bundle DIR`: the failing segment of a bisect run as a standalone bug report.

The root cause's segment (from the nearest known reference tensors to its tensor) is cut from the FP32
graph, shrunk when large, put through the candidate's precision transform, and written with the reference's
boundary inputs and outputs and the candidate's outputs by `cp_debug.bugreport.writer.write_bundle`.
"""

from __future__ import annotations

from pathlib import Path

from cp_debug.errors import BadInputError

_SHRINK_ABOVE = 6  # nodes: larger segments are shrunk to the smallest range that still diverges


def _transform(spec, feed_for_calib):
    from cp_debug.precision.fp16 import convert_to_fp16
    from cp_debug.precision.int8 import quantize_int8

    if spec.precision == "fp16":
        return lambda m: convert_to_fp16(m)
    if spec.precision == "int8":
        return lambda m: quantize_int8(m, [{k: v for k, v in feed_for_calib(m).items()}]).model
    return lambda m: m


def bundle_from_run(engine, report, out_dir: str | Path, candidate: str | None = None, make_tar: bool = False) -> Path:
    from cp_debug.backends.spec import BackendSpec
    from cp_debug.graph.segment import extract_segment
    from cp_debug.bugreport.writer import write_bundle
    from cp_debug.graph.model import expose_all
    from cp_debug.graph.session import cast_feed, run_ort
    from cp_debug.bugreport.window import diverges_beyond, shrink_segment

    cands = [c for c in report.candidates if c.root_cause is not None]
    if candidate is not None:
        cands = [c for c in cands if c.label == candidate]
    onnx_cands = [c for c in cands if BackendSpec.parse(c.label).framework != "torch"]
    if not cands:
        raise BadInputError("no candidate diverged: there is nothing to bundle")
    if not onnx_cands:
        raise BadInputError("bundles hold an ONNX subgraph: bisect an ONNX backend (ort-…, trt-…) to make one")
    cand = onnx_cands[0]
    spec = BackendSpec.parse(cand.label)
    probe = cand.root_cause.probe
    found = engine.root_cause_segment(cand.label, probe)
    if found is None:
        raise BadInputError(f"the root cause {probe!r} has no ONNX tensor to cut a subgraph at")
    stage, feed, tensor = found
    model = engine.subject.stages[stage].onnx()
    ref_out = engine.reference_value(probe)
    seg = extract_segment(model, feed, [tensor], {tensor: ref_out.shape})
    tol = engine.tolerance_for(cand.label, probe)
    providers = ("CUDAExecutionProvider", "CPUExecutionProvider") if spec.device == "cuda" else ("CPUExecutionProvider",)

    inputs, refs = feed, {tensor: ref_out}
    subgraph = _transform(spec, lambda m: {i.name: feed[i.name] for i in m.graph.input if i.name in feed})(seg)
    cand_out = run_ort(subgraph, cast_feed(subgraph, feed), providers=providers)
    notes = []
    if len(seg.graph.node) > _SHRINK_ABOVE and spec.precision in ("fp16", "int8"):
        try:
            shrink_feed = dict(feed)
            if spec.precision == "int8":
                # each cut is calibrated on the reference values at its boundary: run the FP32 segment once
                shrink_feed.update(run_ort(expose_all(seg), feed))
            shrink_transform = _transform(
                spec, lambda m: {i.name: shrink_feed[i.name] for i in m.graph.input if i.name in shrink_feed})
            small = shrink_segment(seg, shrink_transform, feed, diverges_beyond(tol), providers=providers)
            if len(small.nodes) < len(seg.graph.node):
                notes.append(f"shrunk from {len(seg.graph.node)} to {len(small.nodes)} nodes")
                subgraph, inputs, refs, cand_out = small.candidate, small.inputs, small.reference_outputs, \
                    small.candidate_outputs
        except BadInputError:
            raise
        except Exception as err:  # shrinking is an improvement; the full segment is still a valid bundle
            notes.append(f"not shrunk: {type(err).__name__}: {err}")
    settings = dict(report.settings)
    settings["bundle"] = {"probe": probe, "tensor": tensor, "stage": engine.subject.stages[stage].name,
                          "notes": notes}
    return write_bundle(out_dir, subgraph=subgraph, inputs=inputs, ref_outputs=refs, cand_outputs=cand_out,
                        candidate_label=cand.label, candidate_spec=cand.spec, report=report, tolerance=tol,
                        settings=settings, environment=report.environment, providers=providers, make_tar=make_tar)
