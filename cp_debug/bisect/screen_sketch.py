"""Error sketches: a tensor the candidate gets wrong by a large relative error that its stage's outputs hide.

NaN/Inf and all zeros are read from one scalar each (`screen.py`); a tensor that is merely wrong (a float16 value
saturated by a Clip, two large near-equal values cancelled, a sign lost) needs its error, and the screen moves no
tensor. So each float tensor t of static shape gives `SKETCHES` scalar projections s_k(t) = Σ t ⊙ P_k, computed in
FP32 in both runs: t read as R rows of its last size L, P_k(r, l) = Q_R[r, k] · P_L[l, k] with fixed ±1 patterns
(one initializer per distinct L and R, drawn from `SEED`), as MatMul(t, P_L) · Q_R summed over the rows. Since the
patterns' entries are independent ±1 with mean 0, E[(Σ e ⊙ P_k)²] = ‖e‖² for any error e, and the projections are
linear: the mean over k of (s_k(candidate) - s_k(FP32))² estimates ‖e‖² without either side's tensor leaving its
run; with ReduceSumSquare(t) of the FP32 run, ‖e‖ / ‖t‖ is the tensor's relative error (`rel_errors`).
"""

from __future__ import annotations

import numpy as np

SKETCHES = 8  # projections a tensor: their mean of squares has the spread of a chi-square of 8 degrees (below)
SEED = 84
# a tensor off by more than FAR × its precision's budget (the noise model's local fault whatever its siblings do):
# FP16 10 × 64 × 2^-11 = 0.31; BF16's 2.5 would pass garbage (a value unrelated to FP32's of the same size is off by
# √2), so at most half the tensor's own size
HIDDEN_CAP = 0.5
_TINY = float(np.finfo(np.float32).tiny)
_SKETCH = "::sketch"  # [SKETCHES] projections
_NORM = "::sum_sq"  # ReduceSumSquare(t)


def _pattern(size: int, salt: int) -> np.ndarray:
    rng = np.random.default_rng((SEED, salt, size))
    return rng.choice(np.array([-1.0, 1.0], np.float32), size=(size, SKETCHES))


def add_sketches(m, types: dict) -> tuple[set[str], list[str]]:
    """Each float32 node output t of `m` (edited in place) of static shape (`types`: its types with concrete sizes),
    not a graph output, given its projections as an extra output `t::sketch` and ReduceSumSquare(t) as `t::sum_sq`.
    Returns the tensors sketched and the names of the nodes added, which a float16 candidate keeps in FP32 (its
    projections and squares summed in FP32, beyond float16's range)."""
    from onnx import TensorProto, helper, numpy_helper

    outputs = {o.name for o in m.graph.output}
    patterns: dict[tuple[str, int], str] = {}
    sketched: set[str] = set()
    kept: list[str] = []

    def pattern(side: str, size: int) -> str:
        if (side, size) not in patterns:
            name = patterns[(side, size)] = f"::sketch_{side}{size}"
            m.graph.initializer.append(numpy_helper.from_array(_pattern(size, 0 if side == "L" else 1), name))
        return patterns[(side, size)]

    for node in list(m.graph.node):
        if node.op_type == "Constant":
            continue
        for t in node.output:
            dims = _static_dims(types.get(t))
            if not t or dims is None or t in outputs:
                continue
            cols = dims[-1] if dims else 1
            rows = int(np.prod(dims[:-1])) if len(dims) > 1 else 1
            if rows * cols == 0:
                continue
            shape = f"{t}{_SKETCH}_shape"
            m.graph.initializer.append(numpy_helper.from_array(np.array([rows, cols], np.int64), shape))
            names = [f"{t}{_SKETCH}_{part}" for part in ("rows", "cols", "mix")] + [f"{t}{_SKETCH}", f"{t}{_NORM}"]
            rows_t, cols_t, mix, sketch, norm = names
            m.graph.node.extend([
                helper.make_node("Reshape", [t, shape], [rows_t], name=rows_t),
                helper.make_node("MatMul", [rows_t, pattern("L", cols)], [cols_t], name=cols_t),
                helper.make_node("Mul", [cols_t, pattern("R", rows)], [mix], name=mix),
                helper.make_node("ReduceSum", [mix], [sketch], name=sketch, axes=[0], keepdims=0)
                if m.opset_import[0].version < 13 else
                helper.make_node("ReduceSum", [mix, _axes0(m)], [sketch], name=sketch, keepdims=0),
                helper.make_node("ReduceSumSquare", [t], [norm], name=norm, keepdims=0)])
            kept += names
            sketched.add(t)
            m.graph.output.extend([helper.make_tensor_value_info(sketch, TensorProto.FLOAT, [SKETCHES]),
                                   helper.make_tensor_value_info(norm, TensorProto.FLOAT, [])])
    return sketched, kept


def _axes0(m) -> str:
    from onnx import numpy_helper

    name = "::sketch_axes0"
    if not any(i.name == name for i in m.graph.initializer):
        m.graph.initializer.append(numpy_helper.from_array(np.array([0], np.int64), name))
    return name


def _static_dims(ty) -> list[int] | None:
    """A float32 tensor's concrete dims, None for any other type or a size not known."""
    from onnx import TensorProto

    if ty is None or ty.tensor_type.elem_type != TensorProto.FLOAT or not ty.tensor_type.HasField("shape"):
        return None
    dims = [d.dim_value if d.HasField("dim_value") else None for d in ty.tensor_type.shape.dim]
    return None if any(d is None or d < 0 for d in dims) else [int(d) for d in dims]


def sketch_outputs(model) -> list[str]:
    return [o.name for o in model.graph.output if o.name.endswith((_SKETCH, _NORM))]


def hidden_rel(precision: str) -> float:
    """The estimated relative error beyond which a tensor is a hidden fault for `precision` (`HIDDEN_CAP`)."""
    from cp_debug.compare.noise import FAR, budget

    return min(FAR * budget(precision), HIDDEN_CAP)


def broken(out: dict) -> tuple[set[str], set[str]]:
    """The sketched tensors a run made non-finite (a projection NaN or infinite: a NaN or an infinity in t, as
    Σ t ⊙ P carries it) and those it made all zeros (a sum of squares of 0: float16's smallest subnormal squared,
    3.6e-15, is a normal float32)."""
    nonfinite = {k[: -len(_SKETCH)] for k, v in out.items() if k.endswith(_SKETCH) and not np.isfinite(v).all()}
    return nonfinite, {k[: -len(_NORM)] for k, v in out.items() if k.endswith(_NORM) and np.all(v == 0)}


def rel_errors(cand: dict, fp32: dict) -> dict[str, tuple[float, float]]:
    """Each sketched tensor's estimated relative error ‖e‖ / ‖t‖ and its FP32 norm ‖t‖, from the two runs' sketch
    outputs; tensors whose sketches are not finite on either side (the NaN/Inf screen's) are left out, and those whose
    FP32 values are numerically zero (a norm below float32's smallest normal)."""
    out = {}
    for k, s in fp32.items():
        if not k.endswith(_SKETCH) or k not in cand:
            continue
        t = k[: -len(_SKETCH)]
        sq = float(fp32.get(t + _NORM, np.nan))
        a, b = np.asarray(cand[k], np.float64), np.asarray(s, np.float64)
        if not (np.isfinite(a).all() and np.isfinite(b).all() and np.isfinite(sq)):
            continue
        norm = float(np.sqrt(sq))
        if norm < _TINY:  # FP32's own values numerically zero: no relative error to speak of
            continue
        out[t] = (float(np.sqrt(np.mean((a - b) ** 2))) / norm, norm)
    return out
