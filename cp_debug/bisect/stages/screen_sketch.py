"""Error sketches: a tensor the candidate gets wrong by a large relative error that its stage's outputs hide.

NaN/Inf and all zeros were read from one scalar each; a tensor that is merely wrong (two large near-equal values that
float16 cancels, a value it saturates, a sign lost) needs its error, and the screen moves no tensor. So each float32
tensor t of static shape gives `SKETCHES` scalar projections s_k(t) = Σ t ⊙ P_k, computed in FP32 in both runs: t
read as R rows of L values (its dims cut where R + L is least), P_k(r, l) = Q_R[k, r] · P_L[k, l] with fixed ±1
patterns (one initializer per distinct R and L, drawn from `SEED`). Two different elements' pattern values are
independent ±1 of mean 0, so E[(Σ e ⊙ P_k)²] = ‖e‖² for any error e, and the projections are linear: the mean over k
of (s_k(candidate) - s_k(FP32))² estimates ‖e‖² without either side's tensor leaving its run; with ReduceSumSquare(t)
of the FP32 run, ‖e‖ / ‖t‖ estimates the tensor's relative error (`rel_errors`). The same outputs show NaN/Inf (a
projection not finite) and all zeros (a sum of squares of 0), so they stand for the screen's flags where they run.

How sure: for an error spread over many elements the estimate ÷ the truth is √(χ²₁₆ / 16), 0.60-1.41 in 98% of
tensors. A tensor truly off by 0.67 (the cancelled branch of tests/bisect/collapse_models.py) reads below FP16's
limit of 0.31 with probability 4.5e-4 (1.2e-2 with 8 projections); a healthy one at FP16's whole budget, 0.031, reads
above it with a probability below 1e-300. Measured on the zoo's healthy models (ResNet, ViT, the text model, HF BERT
with its mask, HF DETR, DETR-like) and the CenterPoint demo: the largest estimate 0.0054 (0.035 on the tiny preset's
random weights), and the estimate ÷ the truth of ~450 tensors 0.33-1.8 with 8 projections.
"""

from __future__ import annotations

import functools
import math

import numpy as np

SKETCHES = 16  # projections a tensor (see "How sure"); 8 cost the same time (memory-bound) and miss more
SEED = 84
# a tensor off by more than FAR × its precision's budget (the noise model's local fault whatever its siblings do):
# FP16 10 × 64 × 2^-11 = 0.31; BF16's 2.5 would pass garbage (a value unrelated to FP32's of the same size is off by
# √2), so at most half the tensor's own size
HIDDEN_CAP = 0.5
_TINY = float(np.finfo(np.float32).tiny)
_SKETCH = "::sketch"  # [SKETCHES] projections
_NORM = "::sum_sq"  # ReduceSumSquare(t)


# ops whose output holds their first input's values rearranged: the same relative error, sketched once (at the input)
_SAME = frozenset({"Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Identity"})


@functools.lru_cache(maxsize=256)
def _pattern(size: int, side: str) -> np.ndarray:
    """A [SKETCHES, size] pattern of ±1, the same for every graph and run (a seed per side and size), drawn once
    per process (read only: an initializer copies it)."""
    rng = np.random.default_rng((SEED, "LR".index(side), size))
    out = rng.choice(np.array([-1.0, 1.0], np.float32), size=(SKETCHES, size))
    out.flags.writeable = False
    return out


def add_sketches(m, types: dict, only: set[str] | None = None) -> tuple[set[str], list[str]]:
    """Each float32 node output t of `m` (edited in place) of static shape (`types`: its types with concrete sizes),
    not a graph output nor a rearrangement of a sketched tensor (`_SAME`), given its projections as an extra output
    `t::sketch` and ReduceSumSquare(t) as `t::sum_sq`. Returns the tensors sketched (with those rearranged copies,
    which need no flag of their own) and the names of the nodes added,
    which a float16 candidate keeps in FP32 (its projections and squares summed in FP32, beyond float16's range).
    `only`: these tensors and no other (the ones another graph of the same stage sketched, `screen.screen_model`).
    The rows' pattern is applied first, MatMul(Q_R [K, R], t [R, L]) then ⊙ P_L [K, L] summed over L: on a
    CenterPoint voxel tensor ([608k, 64]) 16 ms against 38 ms for t · P_L first (ONNX Runtime, 2 CPU threads)."""
    from onnx import TensorProto, helper, numpy_helper

    outputs = {o.name for o in m.graph.output}
    consts: dict[tuple, str] = {}
    sketched: set[str] = set()
    kept: list[str] = []

    def const(*key) -> str:
        """The initializer of `key` ("shape", R, L / "R", R / "L", L / "axes", 1), made once (`_const`)."""
        if key not in consts:
            consts[key] = f"::sketch_{'_'.join(map(str, key))}"
            m.graph.initializer.append(numpy_helper.from_array(_const(key), consts[key]))
        return consts[key]

    for node in list(m.graph.node):
        if node.op_type in _SAME and node.input[0] in sketched:
            sketched.update(t for t in node.output if t)  # read through its input's sketch, flagged by none
            continue
        if node.op_type == "Constant":
            continue
        for t in node.output:
            dims = _static_dims(types.get(t))
            if not t or dims is None or t in outputs or (only is not None and t not in only):
                continue
            rows, cols = _split(dims)
            if rows * cols == 0:
                continue
            names = [f"{t}{_SKETCH}_{part}" for part in ("rows", "cols", "mix")] + [f"{t}{_SKETCH}", f"{t}{_NORM}"]
            as_rows, by_rows, mix, sketch, norm = names
            m.graph.node.extend([
                helper.make_node("Reshape", [t, const("shape", rows, cols)], [as_rows], name=as_rows),
                helper.make_node("MatMul", [const("R", rows), as_rows], [by_rows], name=by_rows),
                helper.make_node("Mul", [by_rows, const("L", cols)], [mix], name=mix),
                helper.make_node("ReduceSum", [mix], [sketch], name=sketch, axes=[1], keepdims=0)
                if m.opset_import[0].version < 13 else
                helper.make_node("ReduceSum", [mix, const("axes", 1)], [sketch], name=sketch, keepdims=0),
                helper.make_node("ReduceSumSquare", [t], [norm], name=norm, keepdims=0)])
            kept += names
            sketched.add(t)
            m.graph.output.extend([helper.make_tensor_value_info(sketch, TensorProto.FLOAT, [SKETCHES]),
                                   helper.make_tensor_value_info(norm, TensorProto.FLOAT, [])])
    return sketched, kept


def _const(key: tuple) -> np.ndarray:
    """A sketch's constant: a Reshape's shape, the rows' or the columns' pattern, the axes summed."""
    kind, *sizes = key
    if kind in ("R", "L"):
        return _pattern(sizes[0], kind)
    return np.array(sizes, np.int64)


def _split(dims: list[int]) -> tuple[int, int]:
    """t's dims cut in two, R rows × L columns, where the patterns' sizes R + L are least (a [19007, 32, 64] voxel
    tensor: 19007 × 2048, patterns of 0.7 MB, not 608224 × 64's 19.5 MB)."""
    sizes = [(math.prod(dims[:j]), math.prod(dims[j:])) for j in range(len(dims) + 1)]
    return min(sizes, key=sum)


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
