"""Replay a deployment's own detections against the reference and name the glue that explains them (floor 11).

A deployment's own detections (ROS 2 bag, CUDA-CenterPoint txt, mmdet3d pkl) against the reference on the same
clouds: glue variants (box conventions, scores through a monotone map — logits, a second sigmoid, a fitted scale —,
re-decodes of the kept head maps, engine re-runs with shuffled points, caps, zero-padded features), the verdict
naming the glue.

The flow of one `cpdebug replay` (issue 24: the deployment's own detections):
1. `cli/replay_cmd.py` → `replay/sources.py`: frames from a rosbag2 folder (`data/rosbag.py`: the clouds of
   `--lidar-topic` and the node's `DetectedObjects` of `--objects-topic`, paired by header stamp, exact or nearest
   within `--stamp-tolerance-ms`; an objects message without its cloud is an error), or from a CUDA-CenterPoint txt
   folder / mmdet3d results pkl (`data/deployed_detections.py`) with the scans of `--scenes`.
2. `replay/engine.py`: `ReferenceRunner` runs the staged pipeline (`recipes/centerpoint/pipeline.py`, torch stage
   runners) once per frame and per re-run setting (memo keyed by the points' hash); every glue variant of
   `replay/variants.py` gives its boxes: box conventions on the reference's boxes, re-decodes of the kept head maps
   (`models/centerpoint/decode.py`'s `heat_activation`, NMS settings, `replay/nms.py`'s rotated-IoU NMS), re-runs
   (shuffled point order per seed with the preset's or a smaller `max_voxels`, zero-padded voxel features:
   `run_pipeline`'s `max_voxels` / `feature_transform`). Each is matched to the deployment's boxes
   (`lidar/compare_detections.py`) within the tolerances of engine numerics.
3. `replay/report.py` ranks them (ties to the reference glue; a seeded group, whose runs cannot agree box for box
   with the node's own shuffle, by consistency: it agrees with its runs as they agree with each other and sits as far
   from the reference) and writes the verdict; `cli` prints it and writes JSON, Parquet (`replay/files.py`) and HTML
   with bird's-eye views of the worst frames (`replay/html.py`).
"""
