"""A stage's runner with its probes exposed (module outputs for torch, tensors for ONNX), and the probe values picked
out of its outputs. Used by the whole-stage path (`stage_whole.py`) and by the candidates run ahead (`ahead.py`).
"""

from __future__ import annotations

import numpy as np

from cp_debug.backends.spec import BackendSpec, Capability
from cp_debug.bisect.run_state import ProbeSpec, RunState
from cp_debug.bisect.subjects.subject import Stage


def make_stage_runner(run: RunState, spec: BackendSpec, stage: Stage, probes: list[ProbeSpec], *,
                      capture_inputs=False, calib=None, onnx_model=None, extra_tensors=None, facts: bool = True):
    """A runner for `spec` over `stage` with `probes` exposed (module outputs for torch, tensors for ONNX).
    `facts=False`: no precision facts read from ONNX Runtime's optimised graph (writing it costs what writing the
    weights costs: 1.2 s a session of a 136 M-parameter model on the CPU machine) where no one reads them."""
    from cp_debug.backends.factory import make_runner

    mods = [p.name for p in probes if p.kind == "module"]
    if spec.is_torch:
        return make_runner(spec, torch_module=stage.module, input_names=stage.input_names,
                           output_names=stage.output_names, probe_modules=mods, probe_sites=stage.sites(),
                           capture_inputs=capture_inputs, determinism=run.det, calib_feeds=calib)
    model = onnx_model if onnx_model is not None else stage.onnx()
    if extra_tensors is None:
        pm = stage.probe_map()
        extra_tensors = [pm.tensors[m] for m in mods if pm is not None and m in pm.tensors]
    kwargs = dict(extra_outputs=list(dict.fromkeys(extra_tensors)), determinism=run.det, spinning=False,
                  shared_arena=True, graph_facts=facts, **run.ort_kwargs(spec, model))
    takes_qdq = spec.precision == "int8" and spec.can(Capability.QDQ_MODEL) and onnx_model is None
    qdq = stage.qdq_onnx() if takes_qdq else None
    if qdq is not None:
        kwargs["int8_model"] = qdq  # --int8: the deployed Q/DQ graph, not ORT's own quantization
    elif spec.calibrated:  # INT8, FP8
        kwargs["calib_feeds"] = calib
    if spec.is_tensorrt:
        kwargs["stage"] = stage.name  # its messages name the stage
    if onnx_model is None and spec.onnx_dir is not None:  # trt@DIR: the user's engine beside the stage's ONNX
        from cp_debug.backends.trt.trt_plan import prebuilt_engine

        kwargs["engine_file"] = prebuilt_engine(spec.onnx_dir, stage.name)  # a runner that builds none ignores it
    return make_runner(spec, onnx_model=model, **kwargs)


def probe_values(stage: Stage, spec: BackendSpec, outputs: dict, probes: list[ProbeSpec],
                 feed: dict) -> dict[str, np.ndarray]:
    """Pick each probe's value out of a runner's outputs (torch keys by module, ONNX by tensor)."""
    vals = {}
    pm = stage.probe_map() if spec.runs_onnx else None
    for p in probes:
        if p.kind == "input":
            vals[p.name] = feed[p.name]
        elif p.kind == "output":
            vals[p.name] = outputs[p.name]
        elif spec.is_torch:
            if p.name in outputs:
                vals[p.name] = outputs[p.name]
        elif pm is not None and p.name in pm.tensors and pm.tensors[p.name] in outputs:
            vals[p.name] = outputs[pm.tensors[p.name]]  # absent: the candidate's graph lost it (reported missing)
    return vals

