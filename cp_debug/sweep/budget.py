"""What a sweep measured of each candidate, in the figures `--budget` limits (`eval.gates.CandidateFigures`)."""

from __future__ import annotations

from cp_debug.sweep.records import FrameResult, SweepSettings


def budget_figures(results: list[FrameResult], ranked: list, metrics: dict | None, settings: SweepSettings,
                   heads: tuple[str, ...] = ()):
    """What a sweep measured of each candidate, for `--budget` (`eval.gates.CandidateFigures`): mAP/NDS (the devkit)
    and the AP change per class and per class x range bin (`sweep_metrics`), the box matching summed over frames
    and every matched pair's centre shift and yaw change (`eval.detection_diff`), each head output's rel. RMSE per
    frame, and the frames that failed or whose verdict for it is diverged (`ranked`: `rank.RankedFrame`s, whose
    verdicts hold the cross-frame layer-local class). `heads`: the head outputs a budget limits."""
    from cp_debug.compare.noise import Outcome

    from cp_debug.eval.boxes import SampleBoxes
    from cp_debug.eval.detection_diff import diff_detections
    from cp_debug.eval.gates import CandidateFigures

    names = tuple(settings.config().class_names)
    lanes = list(settings.backends)
    ref = lanes[0]
    metrics = metrics or {}
    devkit, ap_change = metrics.get("devkit") or {}, metrics.get("ap_change") or {}
    ran = [r for r in results if r.status != "failed"]

    def boxes(lane: str) -> dict:
        return {r.token: SampleBoxes(r.boxes[lane]["boxes"], r.boxes[lane]["labels"], r.boxes[lane]["scores"])
                for r in ran if lane in r.boxes}

    ref_boxes = boxes(ref)
    out = []
    for cand in lanes[1:]:
        dk_ref, dk_cand = devkit.get(ref) or {}, devkit.get(cand) or {}
        pair = {k: (dk_ref[k], dk_cand[k]) for k in ("mAP", "NDS")
                if dk_ref.get(k) is not None and dk_cand.get(k) is not None}
        per_class, per_range = {}, {}
        for cname, buckets in (ap_change.get(cand) or {}).items():
            for bname, v in buckets.items():
                if v.get("ap_ref") is None or v.get("ap_cand") is None:
                    continue
                if bname == "all":
                    per_class[cname] = (v["ap_ref"], v["ap_cand"])
                else:
                    per_range[(cname, bname)] = (v["ap_ref"], v["ap_cand"])
        frames = [(r, next((c for c in r.candidates if c.candidate == cand), None)) for r in results]
        dets = [c.detections for _, c in frames if c is not None]
        diff = diff_detections(ref_boxes, boxes(cand), names, max_dist=settings.max_dist) if ran else None
        heads = {h: tuple(p.rel_rmse for _, c in frames if c is not None for p in c.probes
                          if p.probe == h and p.status != "missing") for h in heads}
        verdicts = {rf.index: next((v for v in rf.verdicts if v.candidate == cand), None) for rf in ranked}
        diverged = tuple(r.token for r in results if r.status == "failed" or verdicts.get(r.index) is None
                         or verdicts[r.index].outcome is Outcome.DIVERGED)
        out.append(CandidateFigures(
            cand, ref, map=pair.get("mAP"), nds=pair.get("NDS"), ap_per_class=per_class, ap_per_range=per_range,
            match=(sum(d.matched for d in dets), sum(d.num_ref for d in dets), sum(d.num_cand for d in dets))
            if dets else None,
            centre_shifts=tuple(diff.pairs.centre_shift.tolist()) if diff is not None else None,
            yaw_changes=tuple(diff.pairs.yaw_change.tolist()) if diff is not None else None,
            head_errors={h: v for h, v in heads.items() if v}, frames=len(results), diverged_frames=diverged))
    return tuple(out)
