"""What the LiDAR detector recipes share (CenterPoint, TransFusion-L): point files and points prepared for a model,
voxelization, synthetic scenes, the 3D boxes a detector hands over and two sets of them matched box to box
(`compare_detections.py`), the class names and voxel grid of its space, and the record of a preset-built model a
report stores. No recipe lives here, and nothing here names one."""
