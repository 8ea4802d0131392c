"""FP32 vs INT8 on held-out scenes: the fake-quant torch model and the Q/DQ ONNX in ONNX Runtime.

ONNX Runtime is run twice on the Q/DQ file: as deployed (default graph optimizations, which fuse
DQ -> Conv -> Q into integer QLinearConv kernels on the CPU) and with graph optimizations off (Q/DQ evaluated
as float ops, i.e. the Q/DQ semantics exactly). The second must agree with the fake-quant torch model up to
INT8 rounding flips; the first measures what ORT's integer kernels add on this CPU.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

LANES = ("torch-fakequant", "ort-qdq", "ort-qdq-noopt")


@dataclass(frozen=True)
class LaneError:
    lane: str
    reference: str
    per_output: dict  # output -> rel. RMSE
    max_abs: dict  # output -> max |diff|

    @property
    def worst(self) -> float:
        return max(self.per_output.values())


@dataclass(frozen=True)
class Int8Comparison:
    scenes: int
    rows: tuple[LaneError, ...]

    def get(self, lane: str, reference: str = "fp32") -> LaneError:
        return next(r for r in self.rows if r.lane == lane and r.reference == reference)

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame([{"lane": r.lane, "reference": r.reference, **r.per_output} for r in self.rows])

    def to_json(self) -> dict:
        return {"scenes": self.scenes, "rows": [asdict(r) for r in self.rows]}


def ort_outputs(onnx_path: str | Path, spatial_inputs: Sequence, optimize: bool = True) -> list[dict[str, np.ndarray]]:
    """The backbone/neck/head Q/DQ file run by ONNX Runtime (CPU) on each spatial_features tensor."""
    from cp_debug.models.centerpoint.model import BACKBONE_INPUTS, HEAD_OUTPUTS

    from cp_debug.backends.ort.ort_runner import exact_int8
    from cp_debug.ort_sessions import open_session, session_options

    so = session_options(level=None if optimize else "ORT_DISABLE_ALL", quiet=True)
    exact_int8(so)  # exact integer products on CPUs without VNNI
    sess = open_session(str(onnx_path), so)
    out = []
    for s in spatial_inputs:
        arr = s.detach().cpu().numpy() if hasattr(s, "detach") else np.asarray(s)
        res = sess.run(list(HEAD_OUTPUTS), {BACKBONE_INPUTS[0]: arr})
        out.append(dict(zip(HEAD_OUTPUTS, res)))
    return out


def _lane(lane: str, reference: str, ref: list[dict], got: list[dict]) -> LaneError:
    from cp_debug.compare.pooled import rel_rmse

    names = list(ref[0])
    return LaneError(lane, reference,
                     {n: rel_rmse([r[n] for r in ref], [g[n] for g in got]) for n in names},
                     {n: float(max(np.abs(g[n].astype(np.float64) - r[n]).max() for r, g in zip(ref, got)))
                      for n in names})


def compare_int8(fp32_model, qmodel, backbone_onnx: str | Path, spatial_inputs: Sequence) -> Int8Comparison:
    from cp_debug.recipes.centerpoint.ptq.scenes import head_outputs

    fp = [head_outputs(fp32_model, s) for s in spatial_inputs]
    fq = [head_outputs(qmodel, s) for s in spatial_inputs]
    ort_opt = ort_outputs(backbone_onnx, spatial_inputs, optimize=True)
    ort_plain = ort_outputs(backbone_onnx, spatial_inputs, optimize=False)
    rows = (
        _lane("torch-fakequant", "fp32", fp, fq),
        _lane("ort-qdq", "fp32", fp, ort_opt),
        _lane("ort-qdq-noopt", "fp32", fp, ort_plain),
        _lane("ort-qdq-noopt", "torch-fakequant", fq, ort_plain),
        _lane("ort-qdq", "torch-fakequant", fq, ort_opt),
    )
    return Int8Comparison(len(spatial_inputs), rows)
