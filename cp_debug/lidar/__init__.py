"""What the LiDAR detector recipes share (floor 3½; CenterPoint, TransFusion-L): point files and points prepared for a
model, voxelization, synthetic scenes, the 3D boxes a detector hands over and two sets of them matched box to box
(`compare_detections.py`), the class names and voxel grid of its space, and the record of a preset-built model a
report stores. No recipe lives here, and nothing here names one.

What the LiDAR recipes share, naming none: an array → the model's input columns and range filter (`points.py`),
voxelization (`voxelize.py`), the model's own synthetic scan (`synthetic.py`: the random init calibrates on it,
bisect's default input), the 3D boxes a detector hands over and circle NMS (`boxes.py`: `Detections`), the class
names, voxel grid and `LidarConfig` (what shared code reads of a recipe's config: `space.py`), two box sets judged
into one `BoxVerdict` by the noise model, the end of every detector's bisect, and a frame's box figures judged as
sweep and eval judge them (`box_verdict.py`), and `ModelRecord`, the model a run names (`record.py`), low enough for
every floor to type with.
"""
