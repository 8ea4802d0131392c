"""Data with ground truth (floor 5): whole synthetic LiDAR scenes (scenes.py) and mmdet3d info files (infos.py).

The one `Frame` every feature takes (`frames.py`: a token and a source — a synthetic scene's seed, a point file with
its sweeps and info-file ground truth, a bag message, the model's scan — whose `load(cfg)` gives the points and a
typed `GroundTruth`; `held_out`, `calibration`, frames of an info file / folder / bag), synthetic LiDAR scenes with
ground truth (`scenes.py`: every held-out, calibration and training frame, from a seed; the scene's spec and
primitives in `scene_spec.py`, where its objects stand in `scene_layout.py`, the spinning LiDAR's rays in
`ray_casting.py`), point files and sweeps (`point_files.py`, `pcd.py`), mmdet3d info files (read/write), scene
folders, Autoware's parameter files (`autoware_params.py`: every threshold layout, the v4.1 manifest; which node a
file is, the recipe's `AutowareNode`) and model folders (`model_folder.py`: the one home of the deployed pair's file
names — manifest, `<stage>.onnx`, `<stage>_<model>.onnx`), ROS 2 bags (`rosbag.py`: bags, stamp pairing;
`ros_messages.py`: PointCloud2, Autoware DetectedObjects) and a deployment's prediction files
(`deployed_detections.py`).

In short: `frames.py`: `Frame` (token + source: held-out seed, point file + sweeps, info entry, bag message)
`.load(cfg)` → `Scan` (points + `GroundTruth`); `held_out(n, first)` · `HeldOutSet` · `calibration(cfg, …)`;
`point_files.py` / `pcd.py` / `infos.py` / `rosbag.py`: the readers. Autoware's nodes are their recipes' tables:
`autoware_params.read_params(paths, node)` reads any node's files, and the node (`AutowareNode`) is the recipe's.
"""
