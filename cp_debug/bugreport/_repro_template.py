#!/usr/bin/env python3
"""Reproduce a numerical divergence found by cp_debug, on the ONNX subgraph in this directory.

Runs subgraph.onnx on inputs.npz with the recorded ONNX Runtime providers (or TensorRT with --trt), compares
the result with reference_outputs.npz using cp_debug's metrics and tolerance, and prints a table.

Exit status: 1 the divergence reproduces, 0 within tolerance, 2 could not run here.
Needs numpy and onnxruntime (TensorRT runs need tensorrt and polygraphy). Does not need cp_debug.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

import numpy as np

# Written by cp_debug when the bundle was made: candidate, reference, tolerance, providers, session options.
SETTINGS: dict = {}  # <cp_debug:settings>

HERE = os.path.dirname(os.path.abspath(__file__))
ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
             "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int8)": np.int8, "tensor(uint8)": np.uint8,
             "tensor(bool)": np.bool_}


def compare(ref, test, atol: float, rtol: float, max_share: float) -> dict:
    """cp_debug's TensorDiff metrics: |test - ref| against atol + rtol * |ref|, in float64."""
    ref, test = np.asarray(ref), np.asarray(test)
    out = {"shape": list(ref.shape), "test_shape": list(test.shape)}
    if ref.shape != test.shape:
        return {**out, "max_abs": math.nan, "max_rel": math.nan, "rel_max": math.nan, "rel_rmse": math.nan,
                "snr_db": math.nan,
                "share_beyond": math.nan, "status": "shape_mismatch"}
    r, t = ref.astype(np.float64), test.astype(np.float64)
    nan, inf = int(np.isnan(t).sum()), int(np.isinf(t).sum())
    if r.size == 0:
        return {**out, "max_abs": 0.0, "max_rel": 0.0, "rel_max": 0.0, "rel_rmse": 0.0, "snr_db": math.inf,
                "share_beyond": 0.0,
                "nan": nan, "inf": inf, "status": "ok"}
    with np.errstate(all="ignore"):
        d = np.abs(t - r)
        finite = np.isfinite(d)
        all_finite = bool(finite.all())
        df = np.where(finite, d, 0.0)
        absr = np.abs(r)
        max_abs = float(df.max()) if all_finite else math.inf
        max_rel = float((df / np.maximum(absr, 1e-12)).max()) if all_finite else math.inf
        mse = float(np.dot(df.ravel(), df.ravel()) / r.size) if all_finite else math.inf
        rf = np.where(np.isfinite(r), r, 0.0).ravel()
        ref_power = float(np.dot(rf, rf) / r.size)
        beyond = ~finite | (d > atol + rtol * absr)
    rmse = math.sqrt(mse)
    rel_rmse = rmse / math.sqrt(ref_power) if ref_power > 0 else (0.0 if rmse == 0 else math.inf)
    if mse == 0:
        snr_db = math.inf
    elif ref_power == 0 or not math.isfinite(mse):
        snr_db = -math.inf
    else:
        snr_db = 10.0 * math.log10(ref_power / mse)
    share = float(beyond.mean())
    if nan or inf:
        status = "nan" if nan else "inf"
    elif (share > max_share) if max_share > 0 else bool(beyond.any()):
        status = "diverged"
    else:
        status = "ok"
    ref_max = float(np.abs(np.where(np.isfinite(r), r, 0.0)).max())
    rel_max = (max_abs / ref_max if ref_max > 0 else (0.0 if max_abs == 0 else math.inf)) \
        if math.isfinite(max_abs) else math.inf
    return {**out, "max_abs": max_abs, "max_rel": max_rel, "rel_max": rel_max, "rel_rmse": rel_rmse,
            "snr_db": snr_db,
            "share_beyond": share, "nan": nan, "inf": inf, "status": status}


def fmt(v) -> str:
    if isinstance(v, str):
        return v
    if v is None:
        return "-"
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if v == 0:
        return "0"
    if 1e-3 <= abs(v) < 1e4:
        s = f"{v:.3g}"
        return f"{v:.0f}" if "e" in s else s
    m, e = f"{v:.2e}".split("e")
    return f"{m}e{int(e)}"


def run_ort(model: str, feed: dict, providers: list) -> tuple[dict, str]:
    try:
        import onnxruntime as ort
    except ImportError:
        raise SystemExit(_fail("onnxruntime is not installed here: pip install onnxruntime")) from None
    names = [p if isinstance(p, str) else p[0] for p in providers]
    available = ort.get_available_providers()
    missing = [n for n in names if n not in available]
    if missing:
        raise SystemExit(_fail(f"{', '.join(missing)} not available in this onnxruntime (available: "
                               f"{', '.join(available)}); try --providers CPUExecutionProvider"))
    so = ort.SessionOptions()
    for key, value in (SETTINGS.get("session_options") or {}).items():
        if key == "graph_optimization_level":
            value = getattr(ort.GraphOptimizationLevel, value) if isinstance(value, str) \
                else ort.GraphOptimizationLevel(value)
        if key == "config_entries":
            for k, v in value.items():
                so.add_session_config_entry(str(k), str(v))
            continue
        setattr(so, key, value)
    provider_options = [({} if isinstance(p, str) else dict(p[1])) for p in providers]
    sess = ort.InferenceSession(model, sess_options=so, providers=names, provider_options=provider_options)
    feed = _cast_feed(feed, {i.name: ORT_TYPES.get(i.type) for i in sess.get_inputs()})
    outs = sess.run(None, feed)
    return dict(zip([o.name for o in sess.get_outputs()], outs)), \
        f"onnxruntime {ort.__version__} [{', '.join(sess.get_providers())}]"


def run_trt(model: str, feed: dict) -> tuple[dict, str]:
    try:
        import tensorrt as trt
        from polygraphy.backend.trt import EngineFromNetwork, NetworkFromOnnxPath, TrtRunner
    except ImportError:
        raise SystemExit(_fail("TensorRT is not installed here (pip install tensorrt polygraphy): "
                               "run without --trt to use onnxruntime")) from None
    try:  # the subgraph already holds the candidate's precision: let TensorRT keep its types
        network = NetworkFromOnnxPath(model, strongly_typed=True)
    except TypeError:
        network = NetworkFromOnnxPath(model)
    with TrtRunner(EngineFromNetwork(network)) as runner:
        want = {}
        for name, m in runner.get_input_metadata().items():
            try:
                from polygraphy.datatype import DataType
                want[name] = DataType.to_dtype(m.dtype, "numpy")
            except Exception:  # an older polygraphy: feed as stored (the bundle keeps the declared types)
                want[name] = None
        feed = _cast_feed(feed, want)
        outs = runner.infer(feed)
    return {k: np.asarray(v) for k, v in outs.items()}, f"TensorRT {trt.__version__} (polygraphy)"


def _cast_feed(feed: dict, want: dict) -> dict:
    out = {}
    for name, value in feed.items():
        dtype = want.get(name)
        if dtype is not None and value.dtype != dtype:
            print(f"note: input {name} cast from {value.dtype} to {np.dtype(dtype).name} as the subgraph declares")
            value = value.astype(dtype)
        out[name] = value
    return out


def _fail(msg: str) -> int:
    print(f"repro: cannot run: {msg}", file=sys.stderr)
    return 2


def main(argv=None) -> int:
    tol = SETTINGS.get("tolerance") or {}
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trt", action="store_true", help="run through TensorRT (polygraphy) instead of onnxruntime")
    ap.add_argument("--providers", help="comma-separated onnxruntime providers (default: the recorded ones)")
    ap.add_argument("--atol", type=float, default=tol.get("atol", 1e-4))
    ap.add_argument("--rtol", type=float, default=tol.get("rtol", 1e-3))
    ap.add_argument("--max-share", type=float, default=tol.get("max_share", 0.0),
                    help="an output diverges when more than this share of elements is beyond tolerance (0: any)")
    ap.add_argument("--dir", default=HERE, help="the bundle directory (default: where this script is)")
    args = ap.parse_args(argv)

    model = os.path.join(args.dir, "subgraph.onnx")
    with np.load(os.path.join(args.dir, "inputs.npz")) as z:
        feed = {k: z[k] for k in z.files}
    with np.load(os.path.join(args.dir, "reference_outputs.npz")) as z:
        ref = {k: z[k] for k in z.files}
    recorded = {}
    if os.path.exists(os.path.join(args.dir, "candidate_outputs.npz")):
        with np.load(os.path.join(args.dir, "candidate_outputs.npz")) as z:
            recorded = {k: z[k] for k in z.files}

    if args.trt:
        got, runner = run_trt(model, feed)
    else:
        providers = args.providers.split(",") if args.providers else (SETTINGS.get("providers")
                                                                      or ["CPUExecutionProvider"])
        got, runner = run_ort(model, feed, providers)

    print(f"candidate : {SETTINGS.get('candidate', '?')} ({SETTINGS.get('candidate_spec', '?')}), "
          f"recorded on {SETTINGS.get('device', '?')}")
    print(f"reference : {SETTINGS.get('reference', '?')}")
    print(f"this run  : {runner}")
    print(f"tolerance : |cand - ref| <= atol + rtol*|ref|, atol={fmt(args.atol)} rtol={fmt(args.rtol)} "
          f"max_share={fmt(args.max_share)}")
    cols = ("output", "shape", "max_abs", "max/|ref|max", "rel_rmse", "snr_db", "beyond", "status", "vs recorded")
    table = []
    diverged = []
    for name, r in ref.items():
        if name not in got:
            table.append((name, "x".join(map(str, r.shape)), "-", "-", "-", "-", "-", "missing", "-"))
            diverged.append(name)
            continue
        m = compare(r, got[name], args.atol, args.rtol, args.max_share)
        same = "-"
        if name in recorded:
            a, b = np.asarray(recorded[name]), np.asarray(got[name])
            if a.shape != b.shape:
                same = "other shape"
            elif np.array_equal(a, b, equal_nan=True):
                same = "identical"
            else:
                same = f"max_abs {fmt(compare(a, b, 0.0, 0.0, 0.0)['max_abs'])}"
        if m["status"] != "ok":
            diverged.append(name)
        table.append((name, "x".join(map(str, m["shape"])), fmt(m["max_abs"]), fmt(m["rel_max"]),
                      fmt(m["rel_rmse"]), fmt(m["snr_db"]), f"{m['share_beyond'] * 100:.3g}%"
                      if math.isfinite(m["share_beyond"]) else "-", m["status"].upper()
                      if m["status"] != "ok" else "ok", same))
    widths = [max(len(str(row[i])) for row in [cols] + table) for i in range(len(cols))]
    print()
    for row in [cols] + table:
        print("  ".join(str(v).rjust(w) if 2 <= i <= 6 else str(v).ljust(w) for i, (v, w) in
                        enumerate(zip(row, widths))).rstrip())
    print()
    if diverged:
        print(f"REPRODUCED: {len(diverged)} of {len(ref)} output(s) beyond tolerance: {', '.join(diverged)}")
        return 1
    print(f"NOT REPRODUCED: all {len(ref)} output(s) within tolerance")
    return 0


if __name__ == "__main__":
    sys.exit(main())
