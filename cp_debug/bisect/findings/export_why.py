"""Why the exported graph computes something else than the module: an op exported with other rounding, or dropped.

Three faults users report, each read from the root cause's segment (cut as its local error ran it) run once in FP32,
every tensor inside exposed, and said only where the data shows it:
  * a nearest Resize whose source indices differ from PyTorch's (`floor(dst · in/out)` for `nearest`,
    `floor((dst + ½) · in/out)` for `nearest-exact`): the index maps recomputed from the node's attributes and shapes,
    and the output elements the ONNX Resize fills from another input element than PyTorch would, counted on the
    segment's own values;
  * an integer Div (ONNX truncates toward zero) where PyTorch floors (`//`, `rounding_mode='floor'`): the elements
    that differ by exactly 1, all where the quotient is negative and not whole;
  * an arithmetic op the exporter removed: a node's own PyTorch op (the dynamo exporter's `fx_node` metadata) reads
    an `aten.add/sub/mul/div` that no node of the graph holds, while the ONNX node reads the value before it (the
    optimizer takes a constant within 1e-8 of 0 for 0); with the count of zeros it then reads where it is a log,
    division or root.
"""

from __future__ import annotations

import re

import numpy as np

from cp_debug.bisect.run_state import CandidateState, RunState

_INTS = (2, 3, 4, 5, 6, 7, 12, 13)  # ONNX integer element types
_FX_DEF = re.compile(r"^%(\w+) :")
_FX_ARGS = re.compile(r"%(\w+)")
_ARITH = re.compile(r"^(add|sub|mul|div)(_\d+)?$")
_POLES = {"Log": "log(0) = -inf", "Reciprocal": "1 / 0 = inf", "Sqrt": "a root of a value rounded below 0",
          "Div": "x / 0"}


def export_reason(run: RunState, state: CandidateState, i: int, probe: str) -> str | None:
    """The export fault in `probe`'s segment of stage i, or None where the data shows none."""
    from cp_debug.bisect.findings.segment_why import root_segment, run_segment

    rs = root_segment(run, state, i, probe)
    if rs is None:
        return None
    seg = rs.model
    removed = _removed(run, state, i, seg)
    wanted = [t for n in seg.graph.node if n.op_type in ("Div", "Resize") or n.name in removed
              for t in [*n.input, *n.output] if t]
    if not wanted:
        return None
    values = run_segment(run, "ort", seg, rs.feed, list(dict.fromkeys(wanted))).values
    values.update({k: np.asarray(v) for k, v in rs.feed.items()})
    modes = _torch_modes(run, i, probe)
    for node in seg.graph.node:
        why = None
        if node.op_type == "Div":
            why = _int_div(node, values)
        elif node.op_type == "Resize":
            why = _resize(node, values, modes)
        elif node.name in removed:
            why = _removed_text(node, removed[node.name], values)
        if why:
            from cp_debug.bisect.findings.op_findings import named_module

            where = named_module(node, rs.named)
            return f"export fault at {where + ': ' if where else ''}{why}"
    return None


def _int_div(node, values: dict) -> str | None:
    a, b, q = (values.get(t) for t in (*node.input[:2], node.output[0]))
    if a is None or b is None or q is None or not np.issubdtype(q.dtype, np.integer):
        return None
    a, b = np.broadcast_arrays(a.astype(np.int64), b.astype(np.int64))
    ok = b != 0
    floor = np.where(ok, np.floor_divide(a, np.where(ok, b, 1)), q)
    off = (floor != q) & ok
    if not off.any():
        return None
    by_one = bool(np.all(q[off] - floor[off] == 1))
    negative = bool(np.all((a[off] < 0) != (b[off] < 0)))
    if not (by_one and negative):
        return None
    return (f"integer Div {node.name!r} truncates toward zero where PyTorch floors (`//`, rounding_mode='floor'): "
            f"{int(off.sum())} of {q.size} element(s) differ by exactly 1, every one where the quotient is negative "
            "and not whole (the TorchScript exporter writes aten::floor_divide of integers as Div; the dynamo "
            "exporter, or torch.div(..., rounding_mode='floor') on floats, keeps the floor)")


def _attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _resize(node, values: dict, modes: tuple[str, ...]) -> str | None:
    a = _attrs(node)
    mode = a.get("mode", b"nearest")
    if (mode.decode() if isinstance(mode, bytes) else mode) != "nearest":
        return None
    x, y = values.get(node.input[0]), values.get(node.output[0])
    if x is None or y is None or x.ndim != y.ndim:
        return None
    scales = values.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    ctm = _text(a.get("coordinate_transformation_mode", b"half_pixel"))
    nearest = _text(a.get("nearest_mode", b"round_prefer_floor"))
    best = None
    for torch_mode in modes:
        maps, counts = [], []
        for ax, (n_in, n_out) in enumerate(zip(x.shape, y.shape)):
            scale = float(scales[ax]) if scales is not None and len(scales) == x.ndim else n_out / n_in
            onnx_idx = _onnx_index(n_in, n_out, scale, ctm, nearest)
            torch_idx = _torch_index(n_in, n_out, scale, torch_mode)
            maps.append((onnx_idx, torch_idx))
            counts.append((ax, int((onnx_idx != torch_idx).sum()), n_out))
        if not any(c for _, c, _ in counts):
            return None  # one convention PyTorch has picks the same sources: no fault here
        theirs, ours = x, x
        for ax, (o, t) in enumerate(maps):
            theirs, ours = np.take(theirs, o, axis=ax), np.take(ours, t, axis=ax)
        if not np.array_equal(theirs, y):
            return None  # the candidate's values are not the copies the maps say: another op than read
        differ = int((ours != y).sum())
        if differ and (best is None or differ < best[1]):
            best = (torch_mode, differ, counts)
    if best is None:
        return None
    torch_mode, differ, counts = best
    axes = ", ".join(f"{c} of {n} indices along axis {ax}" for ax, c, n in counts if c)
    return (f"nearest Resize {node.name!r} (coordinate_transformation_mode={ctm}, nearest_mode={nearest}) picks "
            f"another source index than PyTorch's {torch_mode!r} for {axes}: {differ} of {y.size} output elements "
            "are copies of another input element than PyTorch's (export nn.Upsample / interpolate with "
            "mode='nearest' as asymmetric + floor, 'nearest-exact' as half_pixel + round_prefer_ceil)")


def _text(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _onnx_index(n_in: int, n_out: int, scale: float, ctm: str, nearest: str) -> np.ndarray:
    """ONNX Resize's source index of every output index along one axis (the operator's reference formulas)."""
    d = np.arange(n_out, dtype=np.float64)
    if ctm == "align_corners":
        x = d * (n_in - 1) / (n_out - 1) if n_out > 1 else np.zeros_like(d)
    elif ctm == "asymmetric":
        x = d / scale
    elif ctm == "tf_half_pixel_for_nn":
        x = (d + 0.5) / scale
    elif ctm == "pytorch_half_pixel" and n_out == 1:
        x = np.zeros_like(d)
    else:  # half_pixel, pytorch_half_pixel
        x = (d + 0.5) / scale - 0.5
    frac = x - np.floor(x)
    if nearest == "floor":
        idx = np.floor(x)
    elif nearest == "ceil":
        idx = np.ceil(x)
    elif nearest == "round_prefer_ceil":
        idx = np.where(frac == 0.5, np.ceil(x), np.round(x))
    else:
        idx = np.where(frac == 0.5, np.floor(x), np.round(x))
    return np.clip(idx, 0, n_in - 1).astype(np.int64)


def _torch_index(n_in: int, n_out: int, scale: float, mode: str) -> np.ndarray:
    """PyTorch's source index (aten's nearest_idx / nearest_exact_idx, in float32 as it computes them)."""
    d = np.arange(n_out, dtype=np.float32)
    s = np.float32(1.0 / scale) if scale > 0 else np.float32(n_in / n_out)
    x = (d + np.float32(0.5)) * s if mode == "nearest-exact" else d * s
    return np.minimum(np.floor(x), n_in - 1).astype(np.int64)


def _torch_modes(run: RunState, i: int, probe: str) -> tuple[str, ...]:
    """The nearest modes the probe's module (and its children) name, else both PyTorch has."""
    module = run.subject.stages[i].module
    found: list[str] = []
    if module is not None:
        try:
            sub = module.get_submodule(re.sub(r"(\[\d+\]|#\d+)+$", "", probe))
        except AttributeError:
            sub = None
        for m in (sub.modules() if sub is not None else ()):
            mode = getattr(m, "mode", None)
            if mode in ("nearest", "nearest-exact"):
                found.append(mode)
    return tuple(dict.fromkeys(found)) or ("nearest", "nearest-exact")


def _removed(run: RunState, state: CandidateState, i: int, seg) -> dict[str, tuple[str, str, int]]:
    """node name -> (the removed op's FX name, the FX node the ONNX node reads instead, which input) for the
    segment's nodes whose own PyTorch op reads an arithmetic op no node of the stage's graph holds."""
    graph = run.stage_of(state.label, i).onnx().graph
    fx_of: dict[str, str] = {}  # ONNX tensor -> FX name of the node writing it
    defined = set()
    for node in graph.node:
        name = _fx_name(node)
        if name:
            defined.add(name)
            for t in node.output:
                fx_of[t] = name
    out = {}
    for node in seg.graph.node:
        meta = _meta(node).get("pkg.torch.onnx.fx_node", "")
        args = _FX_ARGS.findall(meta.split("args =", 1)[1]) if "args =" in meta else []
        gone = [a for a in args if _ARITH.match(a) and a not in defined]
        if not gone:
            continue
        for k, t in enumerate(node.input):
            before = fx_of.get(t)
            if before is not None and before not in args:
                out[node.name] = (gone[0], before, k)
                break
    return out


def _meta(node) -> dict[str, str]:
    return {p.key: p.value for p in node.metadata_props}


def _fx_name(node) -> str | None:
    m = _FX_DEF.match(_meta(node).get("pkg.torch.onnx.fx_node", ""))
    return m.group(1) if m else None


def _removed_text(node, found: tuple[str, str, int], values: dict) -> str | None:
    gone, before, k = found
    v = values.get(node.input[k])
    pole = _POLES.get(node.op_type)
    if pole is None or v is None or not v.size or (node.op_type == "Div" and k != 1):
        return None
    zeros = int((v == 0).sum()) if node.op_type != "Sqrt" else int((v <= 0).sum())
    if not zeros:
        return None
    line = _source_line(node)
    return (f"the exporter removed aten {gone!r}{f' ({line})' if line else ''}: PyTorch's {_fx_name(node) or 'op'} "
            f"reads it, while the ONNX {node.op_type} {node.name!r} reads {before!r} directly, {zeros} of {v.size} "
            f"of whose values are {'0' if node.op_type != 'Sqrt' else '≤ 0'} ({pole}); the dynamo exporter's "
            "optimizer takes a constant within 1e-8 of 0 for 0 and drops Add(x, c) (use a guard ≥ 1e-8, or "
            "--exporter torchscript)")


def _source_line(node) -> str | None:
    """The last line of source the node's stack trace names (the module's own code), where the graph keeps it."""
    trace = _meta(node).get("pkg.torch.onnx.stack_trace", "")
    lines = [ln.strip() for ln in trace.splitlines() if ln.strip() and not ln.strip().startswith("File ")]
    return f"`{lines[-1]}`" if lines else None
