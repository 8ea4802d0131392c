"""The verification of a fix, as fix.json records it: the written ONNX files against the FP32 ones, in ONNX Runtime,
over a frame set (each recipe's fix plug-in runs its own: CenterPoint's `recipes/centerpoint/fix/verify.py`).

What a deployment runs, not what the search ran (the INT8 search judges fake-quant torch; this judges the Q/DQ
files). Per lane (the plain candidate — every node FP16 / every layer INT8 — where given, and the fix): the
worst head output's rel. RMSE per frame, reference boxes lost and added, mAP/NDS against the ground truth; the
fix's per-class AP change with a paired bootstrap interval; each frame's outcome by the noise model of the
candidate's precision (`figures.FrameVerdict`: within precision, degraded, diverged), recorded whatever the target,
which it decides where the target is within precision; and each stage's median latency in these runs (the
latency cost of the kept nodes on this backend: fixed minus plain). On the search's own frames the pairs the search
ran are taken from its `pair_runs.PairRuns`, seconds included (an encoder both lanes share has one timing).
"""

from __future__ import annotations

from dataclasses import dataclass


from cp_debug.data.frames import FrameSet
from cp_debug.fix.figures import Figures
from cp_debug.fix.targets import FixTarget


@dataclass(frozen=True)
class Lane:
    figures: Figures
    map: float
    nds: float
    latency_ms: dict  # stage -> median ms over the frames (the first frame left out when there are several)

    def to_json(self) -> dict:
        return {**self.figures.to_json(), "mAP": self.map, "NDS": self.nds, "latency_ms": self.latency_ms}


@dataclass(frozen=True)
class Verification:
    target: FixTarget
    frames: FrameSet
    reference_map: float
    reference_nds: float
    plain: Lane | None
    fixed: Lane
    per_class: dict
    device: str
    precision: str = "fp16"  # what the frames' outcomes are judged at: the candidate's

    @property
    def holds(self) -> bool:
        f = self.fixed.figures
        return self.target.holds(f.worst, f.map_drop, f.lost_boxes, f.outcome)

    @property
    def latency_cost_ms(self) -> dict | None:
        if self.plain is None:
            return None
        return {k: self.fixed.latency_ms[k] - self.plain.latency_ms[k] for k in self.fixed.latency_ms}

    def to_json(self) -> dict:
        return {"holds": self.holds, "target": self.target.to_json(), "frames": self.frames.to_json(),
                "tolerance_mode": self.target.mode, "precision": self.precision,
                "outcome": self.fixed.figures.outcome.value,
                "device": self.device, "reference": {"mAP": self.reference_map, "NDS": self.reference_nds},
                "plain": self.plain.to_json() if self.plain else None, "fixed": self.fixed.to_json(),
                "per_class_ap_change": self.per_class,
                "latency_cost_ms": self.latency_cost_ms,
                "latency_note": "median per stage over this verification's frames, ONNX Runtime on this machine"}
