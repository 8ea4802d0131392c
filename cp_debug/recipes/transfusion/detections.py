"""TransFusion-L's detections as Autoware's node makes them (autoware_lidar_transfusion), from the deployed outputs
cls_score0 [1, classes, K], bbox_pred0 [1, 8, K] (center 2, height 1, dim 3, vel 2) and dir_cls_pred0 [1, 2, K].

Step by step, each as the node's file does it:
1. decode, `lib/postprocess/postprocess_kernel.cu:generateBoxes3D_kernel`: label and score = the max over classes of
   cls_score0 (the first class wins a tie); the score is set to 0 where |(sin, cos)| of dir_cls_pred0 is below the
   class's yaw_norm_threshold; x = bbox_pred0[0] * 4 * voxel_x + x_min (the kernel scales by `num_point_values_`,
   the constant 4, not by `out_size_factor_` — the same number in every shipped model), y likewise; z =
   bbox_pred0[2] (the gravity centre); length, width, height = exp(bbox_pred0[3:6]); yaw = atan2(sin, cos). The
   velocity is not read. All in float32.
2. `PostprocessCuda::generateDetectedBoxes3D_launch`: keep score > score_threshold (strictly), sort by descending
   score (thrust::sort, not stable: here a stable sort), circle NMS (`circleNMS`, as in lidar_centerpoint's
   `circle_nms_kernel.cu`: greedy in score order, a box is suppressed by a kept one strictly nearer than
   circle_nms_dist_threshold, whatever their classes).
3. `src/lidar_transfusion_node.cpp:cloudCallback` → `lib/postprocess/non_maximum_suppression.cpp`: IoU BEV NMS over
   the boxes in that order — a box is dropped when any earlier box (kept or not) within iou_nms_search_distance_2d
   of its centre has a BEV IoU (rotated footprints, `object_recognition_utils::get2dIoU`: 0 below 1e-6 of
   intersection or 0.01 m² of union) above iou_nms_threshold; boxes of different classes suppress each other unless
   one is a pedestrian (`isTargetPairObject`).
4. `detection_class_remapper.cpp:mapClasses`, where its parameter file is given (`--params`): each box's Autoware
   label (UNKNOWN, CAR, …, PEDESTRIAN) becomes the first label its row of allow_remapping_by_area_matrix allows
   whose [min_area_matrix, max_area_matrix] holds its BEV area (length x width); the boxes then carry Autoware's
   eight labels.
The node's parameters (`include/.../transfusion_config.hpp:TransfusionConfig`): a score_threshold or
circle_nms_dist_threshold ≤ 0 means the built-in 0.2 / 0.5; a yaw_norm_threshold outside [0, 1) means 0.

The boxes are cp_debug's `Detections` (z at the bottom, as every decode of the house gives them: the node's z less
height / 2; velocity 0, the node publishes none), so TransFusion-L's verdict is CenterPoint's (`recipes/box_verdict`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from cp_debug.data.boxes import bev_corners, bev_overlap
from cp_debug.errors import BadInputError
from cp_debug.recipes.transfusion.interface import DEPLOY_OUTPUTS, deployed

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.lidar.boxes import Detections

POSITION_SCALE = 4  # the kernel's `num_point_values_` (transfusion_config.hpp), where out_size_factor belongs
NODE_SCORE_THRESHOLD = 0.2  # TransfusionConfig's own, used where the file's is ≤ 0
NODE_CIRCLE_NMS = 0.5  # likewise for circle_nms_dist_threshold
MIN_INTERSECTION, MIN_UNION = 1e-6, 0.01  # get2dIoU's floors (m²)
_SEMANTIC = ("CAR", "TRUCK", "BUS", "TRAILER", "MOTORCYCLE", "BICYCLE", "PEDESTRIAN")  # ros_utils.getSemanticType
AUTOWARE_LABELS = ("UNKNOWN",) + _SEMANTIC  # autoware_perception_msgs ObjectClassification's labels, in order


@dataclass(frozen=True)
class NodeParams:
    """What the node's post-process reads, as its parameter files give it (defaults: transfusion.param.yaml and
    transfusion_ml_package.param.yaml as Autoware ships them). `sources`: the files read, in order."""

    class_names: tuple[str, ...] = ("CAR", "TRUCK", "BUS", "BICYCLE", "PEDESTRIAN")
    point_cloud_range: tuple[float, ...] = (-92.16, -92.16, -3.0, 92.16, 92.16, 7.0)
    voxel_size: tuple[float, ...] = (0.24, 0.24, 10.0)
    num_proposals: int = 200
    score_threshold: float = 0.1
    circle_nms_dist_threshold: float = 0.5
    iou_nms_search_distance_2d: float = 10.0
    iou_nms_threshold: float = 0.1
    yaw_norm_thresholds: tuple[float, ...] = (0.3, 0.3, 0.3, 0.3, 0.0)
    # detection_class_remapper.param.yaml: 8 x 8 row-major over AUTOWARE_LABELS (row: the label, column: the label
    # it may become); empty: no remapping (the node's own file turns cars into trucks and vehicles into trailers)
    allow_remapping_by_area_matrix: tuple[float, ...] = ()
    min_area_matrix: tuple[float, ...] = ()
    max_area_matrix: tuple[float, ...] = ()
    sources: tuple[str, ...] = ()

    @property
    def score_cut(self) -> float:
        """The threshold the node applies (its own 0.2 where the file's is ≤ 0)."""
        return float(self.score_threshold) if self.score_threshold > 0 else NODE_SCORE_THRESHOLD

    @property
    def circle_dist(self) -> float:
        return float(self.circle_nms_dist_threshold) if self.circle_nms_dist_threshold > 0 else NODE_CIRCLE_NMS

    @property
    def yaw_norms(self) -> np.ndarray:
        """Per class, as the node keeps them: outside [0, 1) read as 0."""
        return np.asarray([t if 0.0 <= t < 1.0 else 0.0 for t in self.yaw_norm_thresholds], dtype=np.float32)

    def post_process(self) -> dict:
        """What the node's steps 2-3 apply, and the files it was read from (a report's `model.post_process`)."""
        return {"score_threshold": self.score_cut, "circle_nms_dist_threshold": self.circle_dist,
                "iou_nms_threshold": float(self.iou_nms_threshold),
                "iou_nms_search_distance_2d": float(self.iou_nms_search_distance_2d),
                "yaw_norm_thresholds": [float(t) if 0.0 <= t < 1.0 else 0.0 for t in self.yaw_norm_thresholds],
                "class_remapping_by_area": bool(self.allow_remapping_by_area_matrix), "files": list(self.sources)}

    def for_model(self, cfg) -> "NodeParams":
        """These post-process settings with the model's own classes, grid and proposals (what its ml_package file
        would say): for a model that is not the one the files describe."""
        return replace(self, class_names=tuple(str(c).upper() for c in cfg.class_names),
                       point_cloud_range=tuple(float(v) for v in cfg.point_cloud_range),
                       voxel_size=tuple(float(v) for v in cfg.voxel_size), num_proposals=int(cfg.num_proposals))


def read_node_params(paths: Sequence[str | Path], base: NodeParams | None = None) -> NodeParams:
    """The node's parameters from its files (read in order, a later key replacing an earlier one, as the launch file
    passes them); what no file sets stays `base`'s (default: the shipped files' values)."""
    from cp_debug.data.autoware_params import file_parameters

    kinds = {f.name: f.type for f in fields(NodeParams) if f.name != "sources"}
    got: dict = {}
    for path in paths:
        for key, value in file_parameters(Path(path)).items():
            if key in kinds:
                got[key] = _typed(key, value, kinds[key], Path(path).name)
    base = base or NodeParams()
    params = replace(base, **got, sources=base.sources + tuple(str(p) for p in paths))
    remap = ("allow_remapping_by_area_matrix", "min_area_matrix", "max_area_matrix")
    if any(k in got for k in remap):  # a malformed remapper file is said now, not after the run
        try:
            remap_matrices(params)
        except BadInputError as err:
            raise BadInputError(f"{', '.join(Path(p).name for p in paths)}: {err}") from None
    return params


def _typed(key: str, value, kind: str, where: str):
    scalar = {"int": int, "float": float}.get(kind)
    try:
        if scalar is not None:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError
            return scalar(value)
        if not isinstance(value, list):
            raise TypeError
        return tuple(str(v) for v in value) if "str" in kind else tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise BadInputError(f"{where}:{key} = {value!r} is not what the node reads ({kind})") from None


def deployed_outputs(stage_outputs: Mapping[str, np.ndarray], k: int) -> dict[str, np.ndarray]:
    """cls_score0, bbox_pred0, dir_cls_pred0 of the bisect's last stage (`stages.QUERY_OUTPUTS`): its cls_score,
    and the last decoder layer's `k` proposals of center, height, dim, vel (the deployed order) and rot."""
    f32 = {name: np.asarray(value, dtype=np.float32) for name, value in stage_outputs.items()}
    return dict(zip(DEPLOY_OUTPUTS, deployed(f32["cls_score"][..., -k:], f32, k)))


@dataclass(frozen=True)
class NodeBoxes:
    """Every proposal as the kernel writes its Box3D (step 1), in proposal order: box (K, 7) float32 [x, y, z_centre,
    length, width, height, yaw], score (0 where the yaw filter dropped it), label, yaw_norm (|(sin, cos)|)."""

    box: np.ndarray
    score: np.ndarray
    label: np.ndarray
    yaw_norm: np.ndarray


def decode_proposals(outputs: Mapping[str, np.ndarray], params: NodeParams) -> NodeBoxes:
    """Step 1 (`generateBoxes3D_kernel`) on batch element 0 of the deployed outputs."""
    missing = [n for n in DEPLOY_OUTPUTS if n not in outputs]
    if missing:
        raise BadInputError(f"the node's decode needs {', '.join(DEPLOY_OUTPUTS)}; missing {', '.join(missing)}")
    cls, box, rot = (np.asarray(outputs[n], dtype=np.float32)[0] for n in DEPLOY_OUTPUTS)
    if cls.shape[0] != len(params.class_names) or len(params.yaw_norm_thresholds) < cls.shape[0]:
        raise BadInputError(f"cls_score0 has {cls.shape[0]} classes; the node's parameters name "
                            f"{len(params.class_names)} and {len(params.yaw_norm_thresholds)} yaw_norm_thresholds")
    if box.shape[0] < 6 or rot.shape[0] != 2:
        raise BadInputError(f"bbox_pred0 {list(box.shape)} / dir_cls_pred0 {list(rot.shape)}: expected [8, K] / [2, K]")
    label = cls.argmax(0)
    score = cls.max(0)
    yaw_norm = np.sqrt(rot[0] * rot[0] + rot[1] * rot[1])
    score = np.where(yaw_norm >= params.yaw_norms[label], score, np.float32(0.0))
    vx, vy = (np.float32(v) for v in params.voxel_size[:2])
    x = box[0] * np.float32(POSITION_SCALE) * vx + np.float32(params.point_cloud_range[0])
    y = box[1] * np.float32(POSITION_SCALE) * vy + np.float32(params.point_cloud_range[1])
    dims = np.exp(box[3:6])
    out = np.stack([x, y, box[2], dims[0], dims[1], dims[2], np.arctan2(rot[0], rot[1])], axis=1)
    return NodeBoxes(out.astype(np.float32), score.astype(np.float32), label.astype(np.int64), yaw_norm)


def node_detections(outputs: Mapping[str, np.ndarray], params: NodeParams | None = None) -> "Detections":
    """The boxes the node publishes for these deployed outputs (steps 1-4), by descending score."""
    params = params or NodeParams()
    p = decode_proposals(outputs, params)
    return detections_of(p, node_kept(p, params)[2], outputs, params)


def detections_of(p: NodeBoxes, kept: np.ndarray, outputs: Mapping[str, np.ndarray],
                  params: NodeParams) -> "Detections":
    """The published boxes of decoded proposals `p` whose indices `kept` came through steps 2-3 (`node_kept`)."""
    from cp_debug.lidar.boxes import Detections

    b = p.box[kept]
    boxes = np.concatenate([b[:, :2], b[:, 2:3] - b[:, 5:6] * 0.5, b[:, 3:7], np.zeros((len(b), 2), np.float32)], 1)
    rot = np.asarray(outputs["dir_cls_pred0"], dtype=np.float64)
    labels, names = p.label[kept], tuple(params.class_names)
    if params.allow_remapping_by_area_matrix:  # step 4: the labels Autoware publishes, remapped by area
        labels, names = remapped_labels(p, kept, params), AUTOWARE_LABELS
    return Detections(np.ascontiguousarray(boxes, dtype=np.float32), p.score[kept], labels, names,
                      rot_norm=p.yaw_norm[kept].astype(np.float32),
                      rot_rms=float(np.sqrt(np.mean(rot * rot))) if rot.size else None)


def remap_matrices(params: NodeParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(allow, min, max) as the node's DetectionClassRemapper holds them: 8 x 8 over AUTOWARE_LABELS, a bound that
    is not finite read as the largest double."""
    n = len(AUTOWARE_LABELS)
    mats = [np.asarray(m, dtype=np.float64) for m in (params.allow_remapping_by_area_matrix, params.min_area_matrix,
                                                       params.max_area_matrix)]
    if any(m.size != n * n for m in mats):
        raise BadInputError(f"the class remapping matrices must be {n} x {n} over {', '.join(AUTOWARE_LABELS)}; "
                            f"got {', '.join(str(m.size) for m in mats)} values")
    big = np.finfo(np.float64).max
    allow, lo, hi = (m.reshape(n, n) for m in mats)
    return allow != 0, np.where(np.isfinite(lo), lo, big), np.where(np.isfinite(hi), hi, big)


def remapped_labels(p: NodeBoxes, kept: np.ndarray, params: NodeParams) -> np.ndarray:
    """Step 4 (`DetectionClassRemapper::mapClasses`): each kept box's Autoware label, changed to the first label
    its row allows whose [min, max] holds its BEV area (length x width, float32)."""
    allow, lo, hi = remap_matrices(params)
    source = [AUTOWARE_LABELS.index(t) for t in semantic_types(p.label[kept], params)]
    out = np.asarray(source, dtype=np.int64)
    for i, (q, label) in enumerate(zip(kept.tolist(), source)):
        area = float(np.float32(p.box[q, 3]) * np.float32(p.box[q, 4]))
        hits = np.nonzero(allow[label] & (lo[label] <= area) & (area <= hi[label]))[0]
        if len(hits):
            out[i] = int(hits[0])
    return out


def node_kept(p: NodeBoxes, params: NodeParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Proposal indices in the node's order after each of steps 2-3: over the score threshold (by descending score),
    after circle NMS, after IoU NMS."""
    from cp_debug.lidar.boxes import circle_nms

    passed = np.nonzero(p.score > np.float32(params.score_cut))[0]
    passed = passed[np.argsort(-p.score[passed], kind="stable")]
    dist = np.float32(params.circle_dist)
    circled = passed[np.sort(circle_nms(p.box[passed, :2], p.score[passed], float(dist * dist), len(passed),
                                        strict=True))]
    return passed, circled, circled[iou_nms(p.box[circled], p.label[circled], params)]


def iou_nms(boxes: np.ndarray, labels: np.ndarray, params: NodeParams) -> np.ndarray:
    """Step 3 (`NonMaximumSuppression::apply`) on boxes (N, 7) [x, y, z, length, width, height, yaw] in score
    order: the indices kept, in order."""
    semantic = semantic_types(labels, params)
    corners = [footprint(b) for b in boxes]
    keep = []
    for i in range(len(boxes)):
        for j in range(i):
            iou = pair_iou(boxes[i], boxes[j], corners[i], corners[j], (semantic[i], semantic[j]), params)
            if iou is not None and iou > params.iou_nms_threshold:
                break
        else:
            keep.append(i)
    return np.asarray(keep, dtype=np.int64)


def semantic_types(labels: np.ndarray, params: NodeParams) -> list[str]:
    """Each label's semantic type as the node's IoU NMS reads it (`ros_utils.getSemanticType`)."""
    names = [params.class_names[int(c)].upper() if 0 <= int(c) < len(params.class_names) else "" for c in labels]
    return [n if n in _SEMANTIC else "UNKNOWN" for n in names]


def pair_iou(a: np.ndarray, b: np.ndarray, corners_a: np.ndarray, corners_b: np.ndarray, types: tuple[str, str],
             params: NodeParams) -> float | None:
    """The BEV IoU the node's IoU NMS weighs for two boxes, or None where it does not weigh them: a pedestrian and
    another type (`isTargetPairObject`), or centres beyond iou_nms_search_distance_2d."""
    if types[0] != types[1] and "PEDESTRIAN" in types:
        return None
    if (a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2 > float(params.iou_nms_search_distance_2d) ** 2:
        return None
    return bev_iou(corners_a, corners_b)


def footprint(box: np.ndarray) -> np.ndarray:
    """The (4, 2) corners of a box's BEV footprint, counter-clockwise: length along the yaw, width across."""
    return bev_corners(np.asarray(box)[None])[0]


def bev_iou(a: np.ndarray, b: np.ndarray) -> float:
    """get2dIoU of two convex footprints (corners counter-clockwise), with its floors."""
    area, union = bev_overlap(a, b)
    if area < MIN_INTERSECTION:
        return 0.0
    return 0.0 if union < MIN_UNION else min(1.0, area / union)
