"""nuScenes detection metrics through nuscenes-devkit's own algorithms, on boxes held in memory.

No dataset is needed: ground truth and detections become the devkit's `EvalBoxes` of `DetectionBox`, then
`accumulate`, `calc_ap`, `calc_tp` and `DetectionMetrics` compute mAP, the TP errors and NDS exactly as
`NuScenesEval.evaluate` does, with the nuScenes detection config (center distance 0.5/1/2/4 m, TP errors at
2 m, min recall and precision 0.1, 500 boxes per sample, mAP weight 5).

Three deliberate departures, because our classes and data are not nuScenes':
- Classes: only the classes present in the ground truth are evaluated (the devkit's `DetectionConfig`
  insists on all ten nuScenes classes; its `class_names` is narrowed after construction). A class with no
  ground-truth box would otherwise add AP 0 and TP errors 1 whatever the detector does.
- Range: `class_range` is one radius for every class, by default the half-diagonal of the preset's
  point-cloud range, so no box the network can see is dropped. The devkit's distance filter and its
  points-per-box filter (ground truth with 0 lidar points, where the count is known) are applied; its
  bike-rack filter needs the nuScenes database and is not.
- Attributes: our boxes have none. `calc_tp` would give attr_err 1 (its `cummean` of all-nan errors), so the
  attribute error is set to nan for every class, as `NuScenesEval.evaluate` does for traffic_cone, and mAAE
  is reported as nan. NDS is computed over the four TP errors that exist:
  NDS = (5 mAP + sum over ATE, ASE, AOE, AVE of max(0, 1 - err)) / 9, so a perfect detector scores 1.
  (The devkit's own `nd_score` would count the nan attribute score as 0 and cap NDS at 0.9.)
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from cp_debug.errors import BadInputError
from cp_debug.eval.boxes import SampleBoxes

# nuScenes detection config (detection_cvpr_2019.json) apart from class_range.
DIST_THS = (0.5, 1.0, 2.0, 4.0)
DIST_TH_TP = 2.0
MIN_RECALL = 0.1
MIN_PRECISION = 0.1
MAX_BOXES_PER_SAMPLE = 500
MEAN_AP_WEIGHT = 5
TP_NAMES = {"trans_err": "mATE", "scale_err": "mASE", "orient_err": "mAOE", "vel_err": "mAVE", "attr_err": "mAAE"}
NDS_TP_METRICS = ("trans_err", "scale_err", "orient_err", "vel_err")  # attr_err left out: no attributes

INSTALL_HINT = (
    "nuscenes-devkit is not installed: pip install -e '.[eval]' && pip install --no-deps nuscenes-devkit==1.2.0"
)


def devkit_modules():
    """The devkit modules, imported lazily (through `imports.optional`: OpenCV's loader, which the devkit imports,
    edits `sys.path`); a missing devkit is one clear message, one that fails to import says its own error."""
    from cp_debug.imports import optional

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optional("nuscenes.eval.detection.algo", INSTALL_HINT, label="nuscenes-devkit")
        from nuscenes.eval.common.data_classes import EvalBoxes
        from nuscenes.eval.detection import algo
        from nuscenes.eval.detection.constants import DETECTION_NAMES
        from nuscenes.eval.detection.data_classes import DetectionBox, DetectionConfig, DetectionMetrics
    return EvalBoxes, algo, DETECTION_NAMES, DetectionBox, DetectionConfig, DetectionMetrics


def order_scores(samples: Mapping[str, SampleBoxes]) -> tuple[dict[str, SampleBoxes], str]:
    """Scores outside [0, 1] (heatmap logits) replaced by their rank, spread over (0, 1], with the reason; other
    detections unchanged and an empty reason.

    The devkit interpolates confidences with 0 past the last recall and asserts they descend, so one negative
    score crashes it. Average precision and the TP errors depend only on the order of the scores (every box of
    a class is sorted over all samples), so the rank transform keeps the ranking metrics exact: they are the
    figures the deployment would get after any monotone squashing of its scores, sigmoid included."""
    parts = [sb.scores for sb in samples.values() if sb.scores is not None and len(sb)]
    if not parts:
        return dict(samples), ""
    scores = np.concatenate(parts)
    if scores.min() >= 0.0 and scores.max() <= 1.0:
        return dict(samples), ""
    ranks = np.empty(scores.size, np.float64)
    ranks[np.argsort(scores, kind="stable")] = np.arange(1, scores.size + 1) / scores.size
    out, start = {}, 0
    for token, sb in samples.items():
        if sb.scores is None or not len(sb):
            out[token] = sb
            continue
        out[token] = SampleBoxes(sb.boxes, sb.labels, ranks[start:start + len(sb)], sb.num_points)
        start += len(sb)
    return out, (f"scores span [{scores.min():.3g}, {scores.max():.3g}], outside [0, 1]: metrics computed on "
                 "the scores' rank (the same mAP any monotone squashing such as a sigmoid gives)")


def default_range(point_cloud_range: Sequence[float]) -> float:
    """Radius covering the whole BEV point-cloud range (its half-diagonal, from the sensor)."""
    x0, y0, _, x1, y1, _ = (float(v) for v in point_cloud_range)
    return math.hypot(max(abs(x0), abs(x1)), max(abs(y0), abs(y1)))


@dataclass(frozen=True)
class ClassMetrics:
    """One class: AP per center-distance threshold, their mean, and the TP errors at 2 m."""

    name: str
    ap_per_threshold: dict[float, float]
    ap: float
    tp_errors: dict[str, float]  # trans_err, scale_err, orient_err, vel_err, attr_err (nan: no attributes)
    num_gt: int
    num_detections: int


@dataclass(frozen=True)
class DetectionEvaluation:
    """mAP, NDS and the mean TP errors over the evaluated classes, plus each class's figures."""

    mean_ap: float
    nds: float
    tp_errors: dict[str, float]  # keyed mATE, mASE, mAOE, mAVE, mAAE
    per_class: tuple[ClassMetrics, ...]
    num_samples: int
    class_range: float
    not_evaluated: tuple[str, ...] = field(default=())  # classes with no ground-truth box

    def to_json(self) -> dict:
        def num(v: float):
            return None if v is None or not math.isfinite(v) else float(v)

        return {
            "mAP": num(self.mean_ap),
            "NDS": num(self.nds),
            **{k: num(v) for k, v in self.tp_errors.items()},
            "num_samples": self.num_samples,
            "class_range": self.class_range,
            "not_evaluated": list(self.not_evaluated),
            "per_class": {
                c.name: {
                    "AP": num(c.ap),
                    "AP_per_threshold": {f"{th:g}": num(v) for th, v in c.ap_per_threshold.items()},
                    **{TP_NAMES[k][1:]: num(v) for k, v in c.tp_errors.items()},
                    "num_gt": c.num_gt,
                    "num_detections": c.num_detections,
                }
                for c in self.per_class
            },
        }


def evaluate(
    ground_truth: Mapping[str, SampleBoxes],
    detections: Mapping[str, SampleBoxes],
    class_names: Sequence[str],
    *,
    class_range: float = 1e9,
) -> DetectionEvaluation:
    """nuScenes mAP, NDS and TP errors of `detections` against `ground_truth`, both keyed by sample token.

    `class_names[label]` must be nuScenes detection names (ours are). Samples with no detections count as
    empty; a detection sample that has no ground-truth sample is an error. `class_range`: boxes whose BEV
    centre is this far from the sensor or farther are dropped from both sides (see `default_range`).
    The same as `combine` of `evaluate_class` for every class (which callers with cores to spare run apart).
    """
    check_inputs(ground_truth, detections, class_names)
    parts = {c: evaluate_class(ground_truth, detections, class_names, c, class_range=class_range)
             for c in class_names}
    return combine(parts, class_names, len(ground_truth), class_range)


def check_inputs(ground_truth: Mapping[str, SampleBoxes], detections: Mapping[str, SampleBoxes],
                 class_names: Sequence[str]) -> None:
    """What `evaluate` refuses, said in one line: names the devkit does not know, detections of samples without
    ground truth, labels outside the classes, detections without scores, more than the devkit's 500 per sample,
    boxes with NaN/Inf."""
    _, _, DETECTION_NAMES, _, _, _ = devkit_modules()
    unknown = [c for c in class_names if c not in DETECTION_NAMES]
    if unknown:
        raise BadInputError(f"class names {unknown} are not nuScenes detection names ({', '.join(DETECTION_NAMES)})")
    extra = sorted(set(detections) - set(ground_truth))
    if extra:
        raise BadInputError(
            f"{len(extra)} detection sample token(s) have no ground truth, e.g. {extra[0]!r}; "
            "sample tokens must be the scene file stems"
        )
    for name, samples in (("ground truth", ground_truth), ("detections", detections)):
        if _all_fine(list(samples.values()), len(class_names), name == "detections"):
            continue  # else the sample that is not, found one at a time below
        for token, sb in samples.items():
            if len(sb) and (sb.labels.min() < 0 or sb.labels.max() >= len(class_names)):
                raise BadInputError(f"{name} of sample {token!r} has a label outside 0..{len(class_names) - 1}")
            if name == "detections" and sb.scores is None:
                raise BadInputError(f"detections of sample {token!r} have no scores")
            if name == "detections" and len(sb) > MAX_BOXES_PER_SAMPLE:
                raise BadInputError(f"sample {token!r} has {len(sb)} detections; nuScenes evaluation allows at most "
                                    f"{MAX_BOXES_PER_SAMPLE} per sample: keep the highest-scoring ones")
            bad = int((~np.isfinite(sb.boxes).all(axis=1)).sum()) if len(sb) else 0
            if bad:  # the devkit would stop on an assertion; a candidate whose heads overflow decodes such boxes
                raise BadInputError(f"{name} of sample {token!r}: {bad} of {len(sb)} box(es) hold NaN/Inf; the "
                                    "nuScenes metrics need finite boxes")


def _all_fine(samples: list, n_classes: int, scored: bool) -> bool:
    """Does every sample pass `check_inputs`' per-sample checks? Over the samples' arrays end to end, a few numpy
    calls where the check one sample at a time made four (0.3 s of 6000 frames' metrics, issue 87)."""
    if scored and any(sb.scores is None or len(sb) > MAX_BOXES_PER_SAMPLE for sb in samples):
        return False
    filled = [sb for sb in samples if len(sb)]
    if not filled:
        return True
    labels = np.concatenate([sb.labels for sb in filled])
    return bool(labels.min() >= 0 and labels.max() < n_classes
                and np.isfinite(np.concatenate([sb.boxes for sb in filled])).all())


def _config(class_range: float):
    """The nuScenes detection config (detection_cvpr_2019.json) with one `class_range` for every class."""
    _, _, DETECTION_NAMES, _, DetectionConfig, _ = devkit_modules()
    return DetectionConfig(
        class_range={c: class_range for c in DETECTION_NAMES},
        dist_fcn="center_distance",
        dist_ths=list(DIST_THS),
        dist_th_tp=DIST_TH_TP,
        min_recall=MIN_RECALL,
        min_precision=MIN_PRECISION,
        max_boxes_per_sample=MAX_BOXES_PER_SAMPLE,
        mean_ap_weight=MEAN_AP_WEIGHT,
    )


@dataclass(frozen=True)
class ClassPart:
    """One class's share of an evaluation (`evaluate_class`): its AP per threshold and TP errors as the devkit's
    `calc_ap` / `calc_tp` give them (None where the class has no ground truth in range), and its box counts."""

    name: str
    ap_per_threshold: dict[float, float] | None
    tp_errors: dict[str, float] | None
    num_gt: int
    num_detections: int


def of_class(samples: Mapping[str, SampleBoxes], label: int) -> dict[str, SampleBoxes]:
    """Every sample's boxes of class `label` alone (what `evaluate_class` of that class reads of them)."""
    out = {}
    for token, sb in samples.items():
        keep = np.asarray(sb.labels) == label
        out[token] = SampleBoxes(sb.boxes[keep], sb.labels[keep], None if sb.scores is None else sb.scores[keep],
                                 None if sb.num_points is None else np.asarray(sb.num_points)[keep])
    return out


def evaluate_class(ground_truth: Mapping[str, SampleBoxes], detections: Mapping[str, SampleBoxes],
                   class_names: Sequence[str], name: str, *, class_range: float = 1e9) -> ClassPart:
    """Class `name`'s part of `evaluate` (inputs checked by `check_inputs` first): the devkit's `accumulate` of its
    boxes alone — it matches boxes of one class only, so the other classes' boxes change nothing — then `calc_ap`
    per threshold and `calc_tp` at 2 m; each pair's center distance worked out once for the four thresholds
    (`devkit_rows.py`)."""
    from cp_debug.heap import uncollected

    with uncollected():  # its boxes and the matching's bookkeeping hold no cycles
        return _evaluate_class(ground_truth, detections, class_names, name, class_range)


def _evaluate_class(ground_truth: Mapping[str, SampleBoxes], detections: Mapping[str, SampleBoxes],
                    class_names: Sequence[str], name: str, class_range: float) -> ClassPart:
    from cp_debug.eval.devkit_boxes import to_eval_boxes
    from cp_debug.eval.devkit_rows import looked_up, tag

    EvalBoxes, algo, known, DetectionBox, _, _ = devkit_modules()
    class_names = tuple(class_names)
    label = class_names.index(name)
    tokens = sorted(ground_truth)
    sides = of_class(ground_truth, label), of_class(detections, label)
    gt = to_eval_boxes(sides[0], tokens, class_names, True, DetectionBox, EvalBoxes, known)
    pred = to_eval_boxes(sides[1], tokens, class_names, False, DetectionBox, EvalBoxes, known)
    tag(gt, pred, tokens, algo.center_distance)  # each pair's distance worked out once, not once a threshold
    for boxes, side in zip((gt, pred), sides):  # filter_eval_boxes' distance and points-per-box steps
        for token in tokens:
            made = boxes[token]
            if made:
                boxes.boxes[token] = [b for b, keep in zip(made, range_kept(side[token], class_range)) if keep]
    num_gt, num_det = len(gt.all), len(pred.all)
    if num_gt == 0:
        return ClassPart(name, None, None, 0, num_det)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        # As NuScenesEval.evaluate: accumulate per threshold, then AP and TP errors.
        data = {th: algo.accumulate(gt, pred, name, looked_up, th) for th in DIST_THS}
    return class_part(name, data, num_gt, num_det)


def class_part(name: str, data: Mapping, num_gt: int, num_det: int) -> ClassPart:
    """A class's `ClassPart` from its `accumulate` results (threshold -> `DetectionMetricData`): the devkit's `calc_ap`
    per threshold and `calc_tp` at 2 m (where 2 m is among them), as `NuScenesEval.evaluate` has them."""
    if num_gt == 0:
        return ClassPart(name, None, None, 0, num_det)
    _, algo, _, _, _, _ = devkit_modules()
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # nanmean of all-nan attribute errors
        aps = {th: float(algo.calc_ap(md, MIN_RECALL, MIN_PRECISION)) for th, md in data.items()}
        # No attributes: nan, as NuScenesEval.evaluate sets for traffic_cone (calc_tp would give 1).
        tps = {m: np.nan if m == "attr_err" else float(algo.calc_tp(data[DIST_TH_TP], MIN_RECALL, m))
               for m in TP_NAMES} if DIST_TH_TP in data else None
    return ClassPart(name, aps, tps, num_gt, num_det)


def range_kept(sb: SampleBoxes, class_range: float) -> list[bool]:
    """Which boxes of a sample the devkit's filter keeps: `ego_dist < class_range` (its `EvalBox.ego_dist`,
    `np.sqrt(np.sum(np.array(xy) ** 2))`: the same float64 square, sum and root worked out for the sample at once) and a
    ground-truth point count that is not 0 (-1, unknown, is kept)."""
    x, y = sb.boxes[:, 0], sb.boxes[:, 1]
    keep = np.sqrt(x * x + y * y) < class_range
    if sb.num_points is not None:
        keep &= sb.num_points != 0
    return keep.tolist()


def combine(parts: Mapping[str, ClassPart], class_names: Sequence[str], num_samples: int,
            class_range: float) -> DetectionEvaluation:
    """The evaluation of every class's part, as `NuScenesEval.evaluate` adds them up (`DetectionMetrics`: mAP over
    the evaluated classes, the mean TP errors) and NDS over the four TP errors that exist."""
    _, _, _, _, _, DetectionMetrics = devkit_modules()
    evaluated = tuple(c for c in class_names if parts[c].num_gt > 0)
    if not evaluated:
        raise BadInputError("the ground truth has no box inside the evaluation range; nothing to evaluate")
    cfg = _config(class_range)
    cfg.class_range = {c: class_range for c in evaluated}
    cfg.class_names = cfg.class_range.keys()
    metrics = DetectionMetrics(cfg)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # nanmean of all-nan attribute errors
        for c in evaluated:
            for th in DIST_THS:
                metrics.add_label_ap(c, th, parts[c].ap_per_threshold[th])
            for metric in TP_NAMES:
                metrics.add_label_tp(c, metric, parts[c].tp_errors[metric])
        mean_ap = metrics.mean_ap
        tp_errors = metrics.tp_errors
        tp_scores = metrics.tp_scores
    nds = (MEAN_AP_WEIGHT * mean_ap + sum(tp_scores[m] for m in NDS_TP_METRICS)) / (
        MEAN_AP_WEIGHT + len(NDS_TP_METRICS)
    )
    per_class = tuple(
        ClassMetrics(
            name=c,
            ap_per_threshold={th: float(metrics.get_label_ap(c, th)) for th in DIST_THS},
            ap=float(np.mean([metrics.get_label_ap(c, th) for th in DIST_THS])),
            tp_errors={m: float(metrics.get_label_tp(c, m)) for m in TP_NAMES},
            num_gt=parts[c].num_gt,
            num_detections=parts[c].num_detections,
        )
        for c in evaluated
    )
    return DetectionEvaluation(
        mean_ap=float(mean_ap),
        nds=float(nds),
        tp_errors={TP_NAMES[m]: float(v) for m, v in tp_errors.items()},
        per_class=per_class,
        num_samples=num_samples,
        class_range=float(class_range),
        not_evaluated=tuple(c for c in class_names if c not in evaluated),
    )
