_base_ = ["./_base_/pillar_second_secfpn.py"]
cp_debug_description = "small CPU-friendly grid (320x320) with the awml-base modules and state_dict keys"
point_cloud_range = [-51.2, -51.2, -3.0, 51.2, 51.2, 5.0]
voxel_size = [0.32, 0.32, 8.0]
grid_size = [320, 320, 1]
model = dict(
    data_preprocessor=dict(voxel_layer=dict(voxel_size=voxel_size, point_cloud_range=point_cloud_range,
                                            max_voxels=(30000, 30000))),
    pts_voxel_encoder=dict(point_cloud_range=point_cloud_range, voxel_size=voxel_size),
    pts_middle_encoder=dict(output_shape=(grid_size[1], grid_size[0])),
    pts_bbox_head=dict(bbox_coder=dict(pc_range=point_cloud_range, voxel_size=voxel_size)),
    test_cfg=dict(pts=dict(grid_size=grid_size)),
)
