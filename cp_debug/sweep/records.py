"""The sweep's typed records: its settings, and each frame's result (per candidate: the probes' scalars and the
boxes' delta) with their JSON; what the worker, the shards, the ranking and the report pass around."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.recipe_contract.recipe import Recipe

# a box's distance from the sensor, `DetectionDelta.by_range`'s keys (`bucket_of`)
DISTANCE_BUCKETS = ((0.0, 50.0, "0-50m"), (50.0, 90.0, "50-90m"), (90.0, math.inf, "90m+"))


# a frame's status: its outcome (compare/noise.Outcome's words, the same in sweep.json, frames.parquet, the table, the
# JUnit file and the exit code) or "failed"; `FLAGGED`: the outcomes beyond the precision (the frames ranked, classed
# and bisected; an inconclusive frame, whose reference's own runs differ beyond the budget, is not). Shards written
# before issue 46 say "ok" (within precision) or "diverged" (any flagged frame).
FRAME_STATUSES = ("within_precision", "inconclusive", "degraded", "diverged", "failed")
FLAGGED = ("degraded", "diverged")


def bucket_of(x: float, y: float) -> str:
    d = math.hypot(x, y)
    return next(name for lo, hi, name in DISTANCE_BUCKETS if lo <= d < hi)


@dataclass(frozen=True)
class SweepSettings:
    """What every worker needs to build the same lanes (picklable: it travels to Ray actors, the recipe by its
    folder)."""

    backends: tuple[str, ...]
    preset: str = "demo"
    recipe: "Recipe" = field(kw_only=True)  # the recipe of `preset`, resolved by the command line
    level: str = "block"
    checkpoint: str | None = None
    random_weights: bool = False
    seed: int = 0
    int8_dir: str | None = None
    deterministic: bool = True
    cudnn_algo: str | None = None  # Determinism.conv_algo
    max_dist: float = 2.0
    calib_scenes: int = 4
    # torch and ONNX Runtime intra-op threads in every worker: their reductions split work by thread, so the same
    # count on every worker (a Ray actor gets OMP_NUM_THREADS=1) is what makes a Ray sweep equal an in-process one
    # number for number. None: run_sweep fixes it to this machine's `parallel.thread_count()`.
    threads: int | None = None
    # how probes and boxes are judged: "model" (each candidate against its precision's noise, compare/noise.py) or
    # "fixed" (element-wise atol/rtol at the candidate's precision, as before); atol/rtol override the defaults
    tolerance_mode: str = "model"
    atol: float | None = None
    rtol: float | None = None
    # ONNX Runtime candidates on the reference's CUDA device run beside it (a thread and a CUDA stream of their own)
    # instead of after it, and the lanes whose glue runs on one device share each frame's voxels and features (on
    # CUDA made by the frame-reading threads, ahead of the frame): host and GPU work overlap; every value is the same
    overlap: bool = True

    def config(self):
        """The model config of `preset` in `recipe`."""
        return self.recipe.config(self.preset)

    def on_cuda(self) -> bool:
        """A lane on CUDA (trt-* included: TensorRT runs there too)."""
        from cp_debug.backends.spec import BackendSpec

        return any(BackendSpec.parse(b).device == "cuda" for b in self.backends)

    def lanes(self):
        """The `sweep` plug-in of `recipe` (recipe_contract/recipe.PLUGINS): the lanes and the worker of a recipe whose
        frames run on a pipeline of their own, not through a `FrameModel` (`sweep/__init__.py` says its hooks)."""
        return self.recipe.plugin("sweep")

    def to_json(self) -> dict:
        """The settings a sweep's results depend on (the manifest's identity for --resume): `overlap` changes no
        value, so it is left out; the recipe by its name."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "overlap"}
        out["recipe"] = self.recipe.name
        return out


@dataclass(frozen=True)
class ProbeStat:
    """One probe (or stage boundary) of one candidate on one frame: the scalar comparison with the reference."""

    probe: str
    order: int  # position in the pipeline (topological across both stages)
    rel_rmse: float
    rel_max: float  # max |cand - ref| / max |ref|
    cosine: float
    max_abs: float
    nan: int
    inf: int
    status: str  # ok | diverged | nan | inf | shape_mismatch | missing
    expected_rel_rmse: float = math.nan  # the precision's budget at this probe (compare/noise.py)
    noise_ratio: float = math.nan  # rel_rmse / expected_rel_rmse


@dataclass(frozen=True)
class DetectionDelta:
    """The candidate's boxes against the reference's on one frame; `by_class` / `by_range` map a class or a
    distance bucket to [matched, lost, added]."""

    num_ref: int
    num_cand: int
    matched: int
    lost: int
    added: int
    max_centre_shift: float
    mean_centre_shift: float
    max_score_change: float
    max_yaw_change: float
    changed: bool
    by_class: dict = field(default_factory=dict)
    by_range: dict = field(default_factory=dict)
    lost_scores: tuple[float, ...] = ()  # the reference's scores of the boxes lost
    added_scores: tuple[float, ...] = ()  # the candidate's scores of the boxes added
    score_cuts: tuple[float, ...] = ()  # where boxes are cut by score (compare/noise.score_cuts)
    yaw_turns: tuple = ()  # compare.noise.YawTurn: the turns that decide, with the reference's conditioning of each
    flips: int = 0  # a decided glue's choices the candidate made otherwise (TransFusion-L: top-K proposals flipped)


@dataclass(frozen=True)
class CandidateFrame:
    candidate: str
    probes: tuple[ProbeStat, ...]
    detections: DetectionDelta
    diverged: bool  # flagged: a probe or the boxes beyond the tolerance (mode fixed) or the precision (mode model)
    outcome: str | None = None  # noise.Outcome's value on this frame alone (rank.py adds the cross-frame local class)
    reason: str | None = None  # why, in a few words
    precision: str | None = None  # what it was judged at (a deployed folder: the precision its files hold)
    decisions: tuple = ()  # bisect.findings.decisions.OutputDecision: a --metric's values, else the flips read



@dataclass(frozen=True)
class FrameResult:
    """One frame through every lane. `boxes`: per lane {"boxes", "scores", "labels"} lists (for the metrics);
    `gt`: the ground truth, where the frame has one."""

    index: int
    token: str
    status: str  # FRAME_STATUSES: within_precision | degraded | diverged (the worst candidate's outcome) | failed
    reason: str | None = None
    num_points: int = 0
    candidates: tuple[CandidateFrame, ...] = ()
    boxes: dict = field(default_factory=dict)
    gt: dict | None = None

    @property
    def flagged(self) -> bool:
        """Beyond the precision on this frame (degraded or diverged)."""
        return self.status in FLAGGED

    def to_json(self) -> dict:
        """The fields as a dict; `boxes` and `gt` (plain lists already, the bulk of a frame) as they are, not copied."""
        return {"index": self.index, "token": self.token, "status": self.status, "reason": self.reason,
                "num_points": self.num_points, "candidates": [asdict(c) for c in self.candidates],
                "boxes": self.boxes, "gt": self.gt}

    @classmethod
    def from_json(cls, d: dict) -> "FrameResult":
        cands = tuple(CandidateFrame(c["candidate"], tuple(_probe_stat(p) for p in c["probes"]),
                                     _delta(c["detections"]), c["diverged"], c.get("outcome"), c.get("reason"),
                                     c.get("precision"), _decisions(c.get("decisions") or ()))
                      for c in d["candidates"])
        return cls(d["index"], d["token"], _status(d["status"], cands), d.get("reason"), d.get("num_points", 0), cands,
                   d.get("boxes", {}), d.get("gt"))


def _status(status: str, cands: tuple[CandidateFrame, ...]) -> str:
    """A shard's frame status in `FRAME_STATUSES`: a shard written before issue 46 said "ok" (within precision) or
    "diverged" for any frame beyond it (its candidates' outcomes say which)."""
    if status in FRAME_STATUSES:
        return status
    if status == "ok":
        return "within_precision"
    return frame_status(cands) if any(c.outcome for c in cands) else "diverged"


def frame_status(cands) -> str:
    """The status of a frame that ran: the worst outcome of its candidates (`CandidateFrame.outcome`; a flagged one
    without an outcome, as the oldest shards hold, is diverged)."""
    from cp_debug.compare.noise import Outcome, worst

    return worst(Outcome(c.outcome) if c.outcome else Outcome.DIVERGED if c.diverged else Outcome.WITHIN_PRECISION
                 for c in cands).value


def _decisions(ds) -> tuple:
    """A candidate's decisions from JSON (non-finite floats as strings, report/io.py)."""
    from cp_debug.bisect.findings.decisions import OutputDecision

    def num(v):
        return float(v) if isinstance(v, str) else v
    return tuple(OutputDecision(**{k: num(v) if k in ("margin", "reference", "candidate") else v
                                   for k, v in d.items()}) for d in ds)


def _probe_stat(d: dict) -> ProbeStat:
    """From JSON, where non-finite floats are the strings "nan" / "inf" (report/io.py)."""
    floats = ("rel_rmse", "rel_max", "cosine", "max_abs", "expected_rel_rmse", "noise_ratio")
    return ProbeStat(**{k: float(v) if k in floats else v for k, v in d.items()})


def _delta(d: dict) -> DetectionDelta:
    from cp_debug.compare.noise import YawTurn

    return DetectionDelta(**{k: tuple(v) if k in ("lost_scores", "added_scores", "score_cuts")
                             else tuple(YawTurn.from_json(t) for t in v) if k == "yaw_turns" else v
                             for k, v in d.items()})
