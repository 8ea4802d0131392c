"""Which ONNX Runtime INT8 paths give the same numbers on this CPU (issue 53): a small Q/DQ graph quantized by
cp_debug (`PrepareGraph(..., "int8_qdq")`) run in sessions that differ in one thing each, every output compared with
the `ort-cpu-int8` runner's session bit for bit.

    PYTHONPATH=. python benchmarks/int8_isa_check.py [--json OUT.json]

Prints the CPU's INT8 path (`cp_debug.determinism.cpu_int8_path`) and, per variant, how many elements differ from
the runner's and by how many INT8 steps at most. Run it on an AVX2 machine and an AVX-512 VNNI / AMX one.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np


def _net():
    """The tests' TinyNet (conv, BN, ReLU, conv, ReLU, transposed conv, Linear, mean) as the `tiny` fixture seeds it."""
    import torch

    from tests.tiny_net import TinyNet

    torch.manual_seed(0)
    net = TinyNet().eval()
    with torch.no_grad():
        net.bn.running_mean.uniform_(-0.2, 0.2)
        net.bn.running_var.uniform_(0.5, 1.5)
    return net


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="write the table here")
    args = ap.parse_args(argv)

    import tempfile
    from pathlib import Path

    import onnx
    import onnxruntime as ort
    import torch

    from cp_debug.backends.graph_loader import PrepareGraph
    from cp_debug.backends.ort.ort_runner import exact_int8
    from cp_debug.determinism import Determinism, cpu_int8_path

    rs = np.random.RandomState(0)
    x = rs.randn(1, 4, 16, 16).astype(np.float32)
    calib = [{"x": rs.randn(1, 4, 16, 16).astype(np.float32)} for _ in range(4)] + [{"x": x}]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tiny.onnx"
        torch.onnx.export(_net(), (torch.from_numpy(x),), str(path), input_names=["x"], output_names=["out", "mean"],
                          dynamo=False, opset_version=17)
        probes = ("/c2/Conv_output_0",)
        graph = PrepareGraph(path, "ort-cpu-int8", "int8_qdq", extra_outputs=probes, calib_feeds=calib)()
        model = graph.model
    outs = [o.name for o in model.graph.output]

    def all_exposed(m: onnx.ModelProto) -> onnx.ModelProto:
        e = onnx.ModelProto()
        e.CopyFrom(m)
        have = set(outs)
        const = {i.name for i in e.graph.initializer}
        for n in e.graph.node:  # a weight's DequantizeLinear is folded by any engine: never exposed
            if n.op_type == "Constant" or (n.input and all(t in const for t in n.input if t)):
                const.update(n.output)
                continue
            for t in n.output:
                if t and t not in have:
                    e.graph.output.append(onnx.helper.make_empty_tensor_value_info(t))
                    have.add(t)
        return e

    def run(m: onnx.ModelProto, *, level: str = "all", threads: int | None = None, exact: bool = True,
            deterministic: bool = True) -> dict[str, np.ndarray]:
        so = Determinism(enabled=deterministic, ort_opt_level=level).ort_session_options(threads=threads)
        if exact:
            exact_int8(so)
        sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
        return dict(zip(outs, sess.run(outs, {"x": x})))

    # the quantization step of each output: the scale of the QuantizeLinear that feeds it, else None
    steps = {}
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "DequantizeLinear" and n.output[0] in outs and n.input[1] in inits:
            steps[n.output[0]] = float(np.max(inits[n.input[1]]))
    base = run(model)
    variants = {
        "runner (opt all, default threads, exact int8)": dict(m=model),
        "threads=1": dict(m=model, threads=1),
        "threads=2": dict(m=model, threads=2),
        "opt level basic": dict(m=model, level="basic"),
        "opt level disable (Q/DQ as float)": dict(m=model, level="disable"),
        "x64quantprecision off": dict(m=model, exact=False),
        "every tensor exposed (the stand-in engine)": dict(m=all_exposed(model)),
        "every tensor exposed, opt disable": dict(m=all_exposed(model), level="disable"),
    }
    rows = []
    for label, kw in variants.items():
        try:
            got = run(kw.pop("m"), **kw)
        except Exception as err:  # noqa: BLE001 - a variant ONNX Runtime refuses is a row, not the end
            print(f"{label}: ONNX Runtime refused it: {str(err).splitlines()[0][:160]}")
            continue
        for name in outs:
            diff = np.abs(got[name].astype(np.float64) - base[name].astype(np.float64))
            n_diff = int(np.count_nonzero(diff))
            step = steps.get(name)
            rows.append({"variant": label, "output": name, "differ": n_diff, "of": int(diff.size),
                         "max_abs": float(diff.max()) if diff.size else 0.0,
                         "int8_steps": None if step is None else float(diff.max() / step)})
    path_ = cpu_int8_path()
    print(f"CPU INT8 path: {path_}   onnxruntime {ort.__version__}")
    print(f"{'variant':48s} {'output':22s} {'differ':>12s} {'max_abs':>10s} {'steps':>6s}")
    for r in rows:
        steps_ = "-" if r["int8_steps"] is None else f"{r['int8_steps']:.2f}"
        print(f"{r['variant']:48s} {r['output']:22s} {r['differ']:>6d}/{r['of']:<5d} {r['max_abs']:10.3g} {steps_:>6s}")
    if args.json:
        Path(args.json).write_text(json.dumps({"cpu_int8_path": path_, "onnxruntime": ort.__version__,
                                               "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
