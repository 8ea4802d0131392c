_base_ = ["./_base_/transfusion_lidar_pillar_second_secfpn.py"]
cp_debug_description = ("CenterPoint demo's grid (320x320 pillars of 0.32 m, +-51.2 m: the synthetic scenes fit) on an "
                        "80x80 head, 100 proposals, one decoder layer; the shipped trained weights' preset")
point_cloud_range = [-51.2, -51.2, -3.0, 51.2, 51.2, 5.0]
voxel_size = [0.32, 0.32, 8.0]
grid_size = [320, 320, 1]
model = dict(
    data_preprocessor=dict(voxel_layer=dict(point_cloud_range=point_cloud_range, voxel_size=voxel_size,
                                            max_voxels=(30000, 30000))),
    pts_voxel_encoder=dict(point_cloud_range=point_cloud_range, voxel_size=voxel_size),
    pts_middle_encoder=dict(output_shape=(grid_size[0], grid_size[1])),
    pts_bbox_head=dict(num_proposals=100, num_decoder_layers=1,
                       bbox_coder=dict(pc_range=[-51.2, -51.2], voxel_size=[0.32, 0.32])),
    test_cfg=dict(pts=dict(grid_size=grid_size, pc_range=[-51.2, -51.2], voxel_size=[0.32, 0.32])),
)
