"""Data with ground truth: whole synthetic LiDAR scenes (scenes.py) and mmdet3d info files (infos.py)."""
