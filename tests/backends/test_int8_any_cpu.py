"""INT8 on any x86 CPU (issue 53). ONNX Runtime's integer sums are exact on AVX2 (with `session.x64quantprecision`),
AVX-512 VNNI and AMX; the float arithmetic around them is not the same bit for bit, and a value within its last bits of
a half-step is quantized one step apart. What holds on every CPU, and is checked here: the runner's INT8 values are
within one INT8 step of the same Q/DQ graph run with every group in float (ORT with no graph optimisation: the
arithmetic of no particular instruction set's integer kernel), and the report records the CPU's INT8 path and says
how far another CPU may round."""

from __future__ import annotations

import numpy as np
import onnx

from cp_debug.backends.ort.ort_runner import INT8_CPU_BOUND, OrtRunner
from cp_debug.backends.spec import BackendSpec
from cp_debug.determinism import Determinism, cpu_int8_path

CONV2 = "/c2/Conv_output_0"  # a quantized tensor: its DequantizeLinear's scale is one INT8 step


def test_int8_values_are_within_one_step_of_the_graph_run_in_float_and_the_settings_name_the_cpu_path(tiny):
    spec = BackendSpec.parse("ort-cpu-int8")
    runner = OrtRunner(tiny.path, spec, extra_outputs=[CONV2], calib_feeds=tiny.calib)
    graph = runner.graph_loader()().model.graph  # the Q/DQ graph it runs
    with runner as r:
        exact = r.infer({"x": tiny.x})
        settings = r.settings()
    with OrtRunner(tiny.path, spec, extra_outputs=[CONV2], calib_feeds=tiny.calib,
                   determinism=Determinism(ort_opt_level="disable")) as r:
        floated = r.infer({"x": tiny.x})
    dq = next(n for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0].startswith(CONV2))
    scale = float(np.max(onnx.numpy_helper.to_array(next(i for i in graph.initializer if i.name == dq.input[1]))))
    diff = np.abs(exact[CONV2].astype(np.float64) - floated[CONV2])
    assert diff.max() <= scale * 1.0001, (diff.max(), scale)  # at most one step, on AVX2, AVX-512 VNNI and AMX
    steps = diff / scale
    assert np.all((steps < 1e-3) | (np.abs(steps - np.round(steps)) < 1e-3))  # whole steps only: a rounding flip
    assert settings["cpu_int8_path"] == cpu_int8_path() and settings["cpu_int8_bound"] == INT8_CPU_BOUND
    assert settings["config_entries"] == {"session.x64quantprecision": "1"}


def test_the_cpu_int8_path_is_an_instruction_set_name():
    path = cpu_int8_path()
    import platform

    if platform.machine().lower() in ("x86_64", "amd64"):
        assert path in ("amx-int8", "avx512-vnni", "avx-vnni", "avx512bw", "avx2", "sse4", "x86_64 (flags unread)")
    else:
        assert path == platform.machine().lower()
