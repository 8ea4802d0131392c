"""Where a replay's frames come from: a ROS 2 bag (clouds and the node's DetectedObjects, paired by stamp), or a
deployment's prediction files (CUDA-CenterPoint txt folder, mmdet3d results pkl) with the scans of an info file.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from cp_debug.errors import BadInputError
from cp_debug.replay.engine import ReplayFrame


@dataclass(frozen=True)
class FrameSource:
    frames: list[ReplayFrame]
    source: str
    pairing: str  # how frames were paired, with the unpaired counted
    warnings: tuple[str, ...] = ()  # what these frames lack of what the node saw


def no_densification(cfg) -> str | None:
    """What a bag's frames lack: the node's past-frame densification (None for a model without sweeps)."""
    if not cfg.sweeps_num:
        return None
    return (f"the node's past-frame densification is not done: each cloud is replayed alone, time column 0, where "
            f"Autoware's CenterPoint (densification_num_past_frames, 1 as launched) adds past clouds moved into the "
            f"current frame through tf, each point's time column its cloud's lag; preset {cfg.name!r} was trained "
            f"with {cfg.sweeps_num} sweep(s), so the reference sees fewer points than the node did and boxes of "
            "sparse or moving objects may differ for that reason, not the glue's")


def frames_from_bag(path: str | Path, cfg, *, lidar_topic: str, objects_topic: str, tolerance_ms: float = 0.0,
                    max_frames: int | None = None) -> FrameSource:
    from cp_debug.data.rosbag import node_points, pair_by_stamp, read_bag

    p = Path(path)
    clouds, objects = read_bag(p, cfg.class_names, lidar_topic=lidar_topic, objects_topic=objects_topic)
    if not objects:
        raise BadInputError(f"bag {p}: topic {objects_topic} has no message; nothing to replay")
    tol = int(round(tolerance_ms * 1e6))
    pairing = pair_by_stamp([c.stamp_ns for c in clouds], [o.stamp_ns for o in objects], tol)
    if pairing.unpaired_objects:
        o = objects[pairing.unpaired_objects[0]]
        near = min(abs(c.stamp_ns - o.stamp_ns) for c in clouds) / 1e6
        raise BadInputError(
            f"bag {p}: {len(pairing.unpaired_objects)} DetectedObjects message(s) have no cloud on {lidar_topic} "
            f"within {tolerance_ms:g} ms, e.g. stamp {o.stamp_ns} (nearest cloud {near:.3f} ms away); "
            "give --stamp-tolerance-ms or the topic of the cloud the node read (--lidar-topic)")
    frames = [ReplayFrame(str(clouds[i].stamp_ns),
                          node_points(clouds[i].points, cfg, f"bag {p} {lidar_topic} at stamp {clouds[i].stamp_ns}"),
                          objects[j].detections, clouds[i].stamp_ns, dt) for i, j, dt in pairing.pairs]
    skipped = sum(o.skipped for o in objects)
    text = pairing.describe() + (f"; {skipped} object(s) of classes the model lacks left out" if skipped else "")
    frames_ids = {(clouds[i].frame_id, objects[j].frame_id) for i, j, _ in pairing.pairs}
    other = sorted(f"{a} vs {b}" for a, b in frames_ids if a != b)
    if other:
        text += f"; cloud and objects frames differ ({other[0]}): boxes are compared in the cloud's frame as published"
    return FrameSource(frames[:max_frames] if max_frames else frames, f"bag {p}", text,
                       tuple(w for w in (no_densification(cfg),) if w))


def frames_from_files(kind: str, path: str | Path, scenes: str | Path | None, cfg,
                      max_frames: int | None = None, data_root: str | Path | None = None) -> FrameSource:
    """`kind`: "cuda-centerpoint" (a folder of <token>.txt) or "mmdet3d-pkl"; `scenes`: the info file whose
    scans the predictions are of (tokens = scan file stems; lidar paths relative to `data_root`)."""
    from cp_debug.data.deployed_detections import read_cuda_centerpoint, read_mmdet3d_pkl
    from cp_debug.data.frames import from_infos, unique_tokens

    if scenes is None:
        raise BadInputError(f"--{kind} needs --scenes: the info file (or DIR with infos.pkl) of the scans it predicted")
    read = read_cuda_centerpoint if kind == "cuda-centerpoint" else read_mmdet3d_pkl
    dep = read(path, cfg.class_names)
    scans = unique_tokens(from_infos(scenes, cfg, data_root, task="replay"), scenes)
    by_token = {s.token: s for s in scans}
    if not set(dep.frames) & set(by_token) and all(t.isdigit() for t in dep.frames):
        # mmdet3d 0.x results carry no token: their order is the info file's.
        if max(int(t) for t in dep.frames) >= len(scans):
            raise BadInputError(f"{path}: {len(dep.frames)} results by position but {scenes} lists {len(scans)} scans")
        dep = replace(dep, frames={scans[int(t)].token: d for t, d in dep.frames.items()})
    unknown = sorted(set(dep.frames) - set(by_token))
    if unknown:
        raise BadInputError(f"{path}: {len(unknown)} of {len(dep.frames)} frame token(s) match no "
                            f"scan of {scenes}, e.g. "
                            f"{unknown[0]!r} (scan tokens look like {sorted(by_token)[0]!r})")
    frames = [ReplayFrame(t, np.asarray(by_token[t].load(cfg).points), d) for t, d in sorted(dep.frames.items())]
    absent = len(by_token) - len(frames)
    text = (f"{len(frames)} frame(s) paired by token with the scans of {scenes}; {absent} scan(s) without predictions"
            + (f"; {dep.skipped} box(es) of classes the model lacks left out" if dep.skipped else ""))
    return FrameSource(frames[:max_frames] if max_frames else frames, dep.source, text)
