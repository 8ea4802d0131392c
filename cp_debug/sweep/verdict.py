"""The sweep's verdict line: by the noise model (the frames by outcome, what the tensors hold, which frames change
boxes and how many of those sit at the score threshold) or, in mode "fixed", the frames that diverge and why."""

from __future__ import annotations

import math

from cp_debug.compare.noise import Outcome
from cp_debug.sweep.explain import root_cause_counts
from cp_debug.sweep.session import SweepOutcome


def worst_noise(c) -> float | None:
    """The largest rel. RMS error ÷ the precision's budget over the candidate's probes on one frame."""
    vals = [p.noise_ratio for p in c.probes if p.status != "missing" and not math.isnan(p.noise_ratio)]
    return max(vals) if vals else None


def box_frames(outcome: SweepOutcome) -> list[str]:
    """Tokens of the frames where some candidate lost or added a box, in rank order."""
    by_index = {r.index: r for r in outcome.results}
    return [r.token for r in outcome.ranked if any(c.detections.lost + c.detections.added
                                                   for c in by_index[r.index].candidates)]


def model_verdict_line(outcome: SweepOutcome) -> str:
    """The verdict by the noise model: the outcome, the frames by outcome, what the tensors hold, which frames
    change boxes (and how many of those boxes sit at the score threshold)."""
    n = len(outcome.results)
    ran = [r for r in outcome.ranked if r.outcome is not None]
    count = {o: sum(1 for r in ran if r.outcome is o) for o in Outcome}
    parts = [f"{count[Outcome.WITHIN_PRECISION]} of {n} frames within precision"]
    parts += [f"{count[o]} {o.words}" for o in (Outcome.INCONCLUSIVE, Outcome.DEGRADED, Outcome.DIVERGED)
              if count[o]]
    failed = sum(1 for r in outcome.ranked if r.status == "failed")
    if failed:
        parts.append(f"{failed} failed")
    local: dict[str, int] = {}
    for r in ran:
        probe = next((v.local_probe for v in r.verdicts if v.klass == "local" and v.local_probe), None)
        if probe:
            local[probe] = local.get(probe, 0) + 1
    if local:
        top = max(local, key=local.get)
        parts.append(f"{sum(local.values())} by a layer-local fault (first at `{top}` on {local[top]})")
    parts += _tensor_parts(outcome) + [_box_part(outcome)] + _sensitive_part(outcome)
    rc = root_cause_counts(outcome.ranked)
    if rc["text"]:
        parts.append(rc["text"])
    return f"{outcome.outcome.words}: " + "; ".join(parts)


def _tensor_parts(outcome: SweepOutcome) -> list[str]:
    """Per candidate: do its tensors hold its precision's noise, and how close to the budget they come."""
    cands: dict[str, tuple[str, float, int]] = {}
    for r in outcome.results:
        for c in r.candidates:
            beyond = any(p.status not in ("ok", "missing") for p in c.probes)
            prec, top, k = cands.get(c.candidate, (c.precision or "?", 0.0, 0))
            cands[c.candidate] = (prec, max(top, worst_noise(c) or 0.0), k + int(beyond))
    out = []
    for label, (prec, top, beyond) in cands.items():
        if beyond:
            out.append(f"{label}: tensors beyond {prec.upper()}'s noise on {beyond} frame(s) (up to {top:.3g}× its "
                       "expected rounding)")
        else:
            out.append(f"{label}: the tensors hold {prec.upper()}'s noise (every probe ≤ {top:.2g}× its expected "
                       "rounding)")
    return out


def _box_part(outcome: SweepOutcome) -> str:
    """Which frames change boxes, and how many of the boxes lost/added sit at the score threshold."""
    boxes = box_frames(outcome)
    if not boxes:
        return "no box lost or added"
    cfg = outcome.opts.settings.config() if outcome.opts else None
    lost = added = near = 0
    for r in outcome.results:
        for c in r.candidates:
            lost, added = lost + c.detections.lost, added + c.detections.added
            near += _at_threshold(c, cfg) if c.detections.lost + c.detections.added else 0
    shown = ", ".join(boxes[:5]) + (" …" if len(boxes) > 5 else "")
    return (f"boxes change on {len(boxes)} frame(s) ({shown}): {lost} lost, {added} added, {near} of them at the "
            "score threshold")


def _sensitive_part(outcome: SweepOutcome) -> list[str]:
    """The boxes whose turn only their yaw's conditioning in the reference explains (compare/noise.YawTurn), named."""
    from cp_debug.sweep.judge import judge_delta

    if outcome.opts is None:
        return []
    cfg = outcome.opts.settings.config()
    named = [f"{r.token}: {t.label} at ({t.x:.1f}, {t.y:.1f}) m turned {t.change:.2g} rad, |(sin, cos)| "
             f"{t.rot_norm:.2g} where the rot map's RMS is {t.rot_rms:.3g}"
             for r in outcome.results for c in r.candidates
             for t in judge_delta(c.precision or "fp32", c.detections, cfg).sensitive]
    if not named:
        return []
    return [f"a yaw ill-conditioned in the reference explains {len(named)} box turn(s) ({'; '.join(named[:3])}"
            + (" …" if len(named) > 3 else "") + ")"]


def _at_threshold(c, cfg) -> int:
    if cfg is None:
        return 0
    from cp_debug.sweep.judge import judge_delta

    return judge_delta(c.precision or "fp32", c.detections, cfg).at_threshold


def verdict_line(outcome: SweepOutcome) -> str:
    opts = outcome.opts
    if opts is not None and opts.settings.tolerance_mode == "model":
        return model_verdict_line(outcome)
    n = len(outcome.results)
    div = [r for r in outcome.ranked if r.flagged]  # fixed mode: a flagged frame is diverged
    failed = sum(1 for r in outcome.ranked if r.status == "failed")
    local = [r for r in div if r.klass == "local"]
    parts = [f"{len(div)} of {n} frames diverge"]
    if local:
        layers: dict[str, int] = {}
        for r in local:
            probe = next(v.local_probe for v in r.verdicts if v.klass == "local")
            layers[probe] = layers.get(probe, 0) + 1
        top = max(layers, key=layers.get)
        parts.append(f"{len(local)} by a layer-local fault (first at `{top}` on {layers[top]})")
    if len(div) - len(local):
        parts.append(f"{len(div) - len(local)} by uniform noise")
    if failed:
        parts.append(f"{failed} failed")
    rc = root_cause_counts(outcome.ranked)
    if rc["text"]:
        parts.append(rc["text"])
    return "; ".join(parts)
