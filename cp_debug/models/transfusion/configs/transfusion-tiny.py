_base_ = ["./_base_/transfusion_lidar_pillar_second_secfpn.py"]
cp_debug_description = ("128x128 grid of 0.4 m pillars (+-25.6 m), 32x32 head, 40 proposals, for tests; same "
                        "modules, state_dict keys and shapes as transfusion-t4-90m-768")
point_cloud_range = [-25.6, -25.6, -3.0, 25.6, 25.6, 7.0]
voxel_size = [0.4, 0.4, 10]
grid_size = [128, 128, 1]
model = dict(
    data_preprocessor=dict(voxel_layer=dict(point_cloud_range=point_cloud_range, voxel_size=voxel_size,
                                            max_voxels=(8000, 8000))),
    pts_voxel_encoder=dict(point_cloud_range=point_cloud_range, voxel_size=voxel_size),
    pts_middle_encoder=dict(output_shape=(grid_size[0], grid_size[1])),
    pts_bbox_head=dict(num_proposals=40, bbox_coder=dict(pc_range=[-25.6, -25.6], voxel_size=[0.4, 0.4])),
    test_cfg=dict(pts=dict(grid_size=grid_size, pc_range=[-25.6, -25.6], voxel_size=[0.4, 0.4])),
)
