_base_ = ["./_base_/pillar_second_secfpn.py"]
cp_debug_description = ("40x40 grid of 0.64 m pillars (+-12.8 m) for fast tests; same modules and state_dict keys as "
                         "awml-base")
point_cloud_range = [-12.8, -12.8, -3.0, 12.8, 12.8, 5.0]
voxel_size = [0.64, 0.64, 8.0]
grid_size = [40, 40, 1]
model = dict(
    data_preprocessor=dict(voxel_layer=dict(voxel_size=voxel_size, point_cloud_range=point_cloud_range,
                                            max_voxels=(12000, 12000))),
    pts_voxel_encoder=dict(point_cloud_range=point_cloud_range, voxel_size=voxel_size),
    pts_middle_encoder=dict(output_shape=(grid_size[1], grid_size[0])),
    pts_bbox_head=dict(bbox_coder=dict(pc_range=point_cloud_range, voxel_size=voxel_size)),
    test_cfg=dict(pts=dict(grid_size=grid_size)),
)
