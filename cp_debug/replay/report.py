"""The replay's verdict: the variants ranked by agreement, the glue named in one sentence, per-frame rows.

The verdict reads: "97% of the deployment's boxes match the reference after `yaw: y-axis reference`; the
rest differ as engine numerics do (centre shift p95 3 cm); point order alone moves 0.4% of boxes". Ties go
to the variant tried first (the reference glue itself, then the cheaper conventions). A score-space variant is
named as the fault it is ("the deployment publishes scores in logit space: apply sigmoid before thresholding")
with its fit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from cp_debug.replay.engine import FrameResult
from cp_debug.replay.variants import REFERENCE, SCORE_SPACE, GlueVariant

MATCHING = 0.9  # agreement at or above which a variant explains the deployment
EXPLAINS = 0.5  # below this no variant explains it: look at the engines


@dataclass(frozen=True)
class VariantScore:
    variant: GlueVariant
    deployed: int
    boxes: int
    matched: int
    agreeing: int
    centre_p95: float

    @property
    def fraction(self) -> float:
        n = max(self.deployed, self.boxes)
        return 1.0 if n == 0 else self.agreeing / n

    def to_json(self) -> dict:
        return {**self.variant.to_json(), "deployed_boxes": self.deployed, "variant_boxes": self.boxes,
                "matched": self.matched, "agreeing": self.agreeing, "agreement": round(self.fraction, 6),
                "centre_shift_p95_m": round(self.centre_p95, 6)}


def _p95(values: list[np.ndarray]) -> float:
    v = np.concatenate(values) if values else np.zeros(0)
    return float(np.quantile(v, 0.95)) if v.size else 0.0


def score_variants(variants: Sequence[GlueVariant], frames: Sequence[FrameResult]) -> list[VariantScore]:
    out = []
    for i, v in enumerate(variants):
        ag = [f.agreements[i] for f in frames]
        out.append(VariantScore(v, sum(a.deployed for a in ag), sum(a.boxes for a in ag), sum(a.matched for a in ag),
                                sum(a.agreeing for a in ag), _p95([a.centre_shifts for a in ag])))
    return out


@dataclass(frozen=True)
class GroupScore:
    """A seeded family (point order shuffled, at one cap) judged as a whole: the deployment's own shuffle is not
    one of our seeds, so its boxes cannot agree box for box; they are consistent with the family when they agree
    with its runs as much as those runs agree with each other (`spread`) and sit as far from the reference
    (`deployed_to_reference` against `runs_to_reference`)."""

    name: str
    family: str
    to_runs: float  # the deployment's agreement with the group's runs
    spread: float  # the runs' agreement with each other
    runs_to_reference: float
    deployed_to_reference: float

    @property
    def fraction(self) -> float:
        if self.spread < MIN_SPREAD or abs(self.deployed_to_reference - self.runs_to_reference) > REFERENCE_GAP:
            return self.to_runs
        return min(1.0, self.to_runs / self.spread)

    def to_json(self) -> dict:
        return {"name": self.name, "family": self.family, "kind": "seeded group",
                "consistency": round(self.fraction, 6),
                "agreement_with_runs": round(self.to_runs, 6), "runs_among_themselves": round(self.spread, 6),
                "runs_to_reference": round(self.runs_to_reference, 6),
                "deployed_to_reference": round(self.deployed_to_reference, 6)}


MIN_SPREAD = 0.02  # runs that agree less than this among themselves say nothing
REFERENCE_GAP = 0.2  # how much nearer to (or farther from) the reference than the runs the deployment may sit
GROUP_MARGIN = 0.05  # a seeded group must beat the best single variant by this much


def _pooled(ags) -> float:
    ags = list(ags)
    n = sum(max(a.deployed, a.boxes) for a in ags)
    return 1.0 if n == 0 else sum(a.agreeing for a in ags) / n


def score_groups(variants: Sequence[GlueVariant], frames: Sequence[FrameResult]) -> list[GroupScore]:
    from cp_debug.replay.engine import group_of

    groups: dict[str, list[int]] = {}
    for i, v in enumerate(variants):
        if "order_seed" in v.params:
            groups.setdefault(group_of(v), []).append(i)
    out = []
    for name, idx in groups.items():
        if len(idx) < 2:
            continue
        seeds = ", ".join(str(variants[i].params["order_seed"]) for i in idx)
        out.append(GroupScore(f"{name} (seeds {seeds})", variants[idx[0]].family,
                              _pooled(f.agreements[i] for f in frames for i in idx),
                              _pooled(a for f in frames for a in f.among.get(name, ())),
                              _pooled(f.to_reference[i] for f in frames for i in idx),
                              _pooled(f.agreements[0] for f in frames)))
    return out


@dataclass(frozen=True)
class ReplayReport:
    source: str
    preset: str
    weights: str
    pairing: str
    scores: tuple[VariantScore, ...]  # in the order tried (reference first)
    frames: tuple[FrameResult, ...] = field(repr=False)
    settings: dict = field(default_factory=dict)
    groups: tuple[GroupScore, ...] = ()
    warnings: tuple[str, ...] = ()  # what the replay does not do as the node did (`session.node_warnings`)

    @property
    def reference(self) -> VariantScore:
        return self.scores[0]

    @property
    def best(self) -> VariantScore | GroupScore:
        best = self.scores[0]
        for s in self.scores[1:]:
            if s.fraction > best.fraction + 1e-9:
                best = s
        for g in self.groups:
            if g.fraction > best.fraction + GROUP_MARGIN:
                best = g
        return best

    @property
    def best_name(self) -> str:
        b = self.best
        return b.name if isinstance(b, GroupScore) else b.variant.name

    @property
    def best_family(self) -> str:
        b = self.best
        return b.family if isinstance(b, GroupScore) else b.variant.family

    @property
    def matches_reference(self) -> bool:
        return self.best_name == REFERENCE and self.reference.fraction >= MATCHING

    def order_moves(self) -> float | None:
        """Share of the reference's boxes that shuffling the points alone (the preset's cap) moves, or None."""
        moves = [a for f in self.frames for i, a in f.to_reference.items()
                 if self.scores[i].variant.family == "point order"]
        return None if not moves else 1.0 - _pooled(moves)

    def verdict(self) -> str:
        best, ref = self.best, self.reference
        if isinstance(best, GroupScore):
            text = (f"the deployment's boxes are consistent with `{best.name}`: they agree with its runs "
                    f"({best.to_runs:.0%}) as much as the runs agree with each other "
                    f"({best.spread:.0%}) and sit as far "
                    f"from the reference ({best.deployed_to_reference:.0%} against {best.runs_to_reference:.0%})")
        else:
            rest = f"the rest differ as engine numerics do (centre shift p95 {best.centre_p95 * 100:.1f} cm)"
            if ref.deployed == 0 and ref.boxes > 0 and best.fraction < EXPLAINS:
                text = (f"the deployment published no box on {len(self.frames)} frame(s) where the reference finds "
                        f"{ref.boxes}: is the node running on these clouds, and are its scores heatmap logits compared "
                        "with a probability threshold, or its threshold too high?")
            elif best.fraction < EXPLAINS:
                text = (f"no glue variant explains the deployment's boxes (best `{best.variant.name}`: "
                        f"{best.fraction:.0%} agree; the reference glue as is: {ref.fraction:.0%}): the engines "
                        "themselves differ — bisect them (cpdebug bisect)")
            elif best.variant.family == SCORE_SPACE:
                text = _score_space(best, ref, rest)
            elif best.variant.name == REFERENCE:
                text = (f"{best.fraction:.0%} of the deployment's boxes match the reference with its own glue: no glue "
                        f"fault found; {rest}")
            else:
                text = (f"{best.fraction:.0%} of the deployment's boxes match the reference after "
                        f"`{best.variant.name}` (the reference glue as is: {ref.fraction:.0%}); {rest}")
        moves = self.order_moves()
        if moves is not None:
            text += f"; point order alone moves {moves:.1%} of boxes"
        return text

    def rows(self) -> list[dict]:
        out = []
        for f in self.frames:
            for s, a in zip(self.scores, f.agreements):
                out.append({"token": f.token, "stamp_ns": f.stamp_ns, "pair_dt_ns": f.pair_dt_ns,
                            "variant": s.variant.name, "family": s.variant.family, "deployed_boxes": a.deployed,
                            "variant_boxes": a.boxes, "matched": a.matched, "agreeing": a.agreeing,
                            "agreement": a.fraction,
                            "centre_shift_p95_m": (float(np.quantile(a.centre_shifts, 0.95))
                                                   if a.centre_shifts.size else 0.0)})
        return out

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame(self.rows())

    def best_index(self) -> int:
        """Index of the variant whose boxes stand for the verdict (a group: its first run)."""
        b = self.best
        if isinstance(b, GroupScore):
            return next(i for i, s in enumerate(self.scores)
                        if b.name.startswith(s.variant.name.rsplit(" (seed", 1)[0]))
        return self.scores.index(b)

    def worst_frames(self, k: int = 3) -> list[FrameResult]:
        """The frames where the best variant agrees least."""
        i = self.best_index()
        return sorted(self.frames, key=lambda f: f.agreements[i].fraction)[:k]

    def to_json(self) -> dict:
        return {"source": self.source, "preset": self.preset, "weights": self.weights, "pairing": self.pairing,
                "settings": self.settings, "verdict": self.verdict(), "matches_reference": self.matches_reference,
                "best": self.best.to_json(), "best_family": self.best_family, "reference": self.reference.to_json(),
                "point_order_moves": self.order_moves(),
                "variants": sorted((s.to_json() for s in self.scores), key=lambda d: -d["agreement"]),
                "seeded_groups": [g.to_json() for g in self.groups],
                "warnings": list(self.warnings), "frames": self.rows()}


def _score_space(best: VariantScore, ref: VariantScore, rest: str) -> str:
    """The verdict of a score-space variant: what the deployment does to its scores, the fix, the fit's figures."""
    p = best.variant.params
    if p["score_map"] == "logit":
        what, fix = "in logit space (the heatmap before its sigmoid)", "apply sigmoid before thresholding"
    elif p["score_map"] == "sigmoid":
        what, fix = "through a second sigmoid (every score lands in 0.5–0.73)", "drop the second sigmoid"
    else:
        offset = f" {p['offset']:+.3g}" if p["offset"] else ""
        what = f"as {p['scale']:.3g} × the model's score{offset}"
        fix = "publish the model's own score (thresholds tuned on these scores move with them)"
    residual = p.get("fit_max_residual")
    fit = (f"fitted on {p['fit_boxes']} boxes that match in all but the score, largest residual {residual:.2g}"
           if residual is not None else "no box matches in all but the score")
    return (f"the deployment publishes scores {what}: {fix} — after `{best.variant.name}` {best.fraction:.0%} of "
            f"its boxes match the reference's (the reference glue as is: {ref.fraction:.0%}; {fit}); {rest}")


def print_report(report: ReplayReport, console, top: int = 8) -> None:
    from rich.table import Table

    t = Table(title=f"replay of {report.source} — {report.preset}, {report.weights}", title_justify="left")
    for col in ("glue variant", "family", "deployed", "variant", "agree", "agreement", "centre p95 m"):
        t.add_column(col, justify="left" if col in ("glue variant", "family") else "right")
    ranked = sorted(report.scores, key=lambda s: -s.fraction)
    shown = ranked[:top] + ([report.reference] if report.reference not in ranked[:top] else [])
    for s in shown:
        t.add_row(s.variant.name, s.variant.family, str(s.deployed), str(s.boxes), str(s.agreeing), f"{s.fraction:.1%}",
                  f"{s.centre_p95:.3g}", style="bold" if s is report.best else None)
    for g in report.groups:
        t.add_row(g.name, g.family + " (consistency)", "", "", "", f"{g.fraction:.1%}", "",
                  style="bold" if g is report.best else "dim")
    console.print(t)
    console.print(f"  {report.pairing}", highlight=False, soft_wrap=True)
    colour = "green" if report.matches_reference else "yellow"
    console.print(f"  [{colour}]verdict[/{colour}] {report.verdict()}", highlight=False, soft_wrap=True)
    for w in report.warnings:
        console.print(f"  [yellow]warning[/yellow] {w}", highlight=False, soft_wrap=True)
