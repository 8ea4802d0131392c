_base_ = ["./_base_/transfusion_lidar_pillar_second_secfpn.py"]
cp_debug_description = ("AWML Transfusion-L-nearby (T4 XX1): 512x512 grid of 0.2 m pillars (+-51.2 m), one PFN "
                        "layer, 500 proposals on a 128x128 head")
point_cloud_range = [-51.2, -51.2, -3.0, 51.2, 51.2, 7.0]
voxel_size = [0.2, 0.2, 10]
grid_size = [512, 512, 1]
model = dict(
    data_preprocessor=dict(voxel_layer=dict(point_cloud_range=point_cloud_range, voxel_size=voxel_size)),
    pts_voxel_encoder=dict(feat_channels=[64], point_cloud_range=point_cloud_range, voxel_size=voxel_size),
    pts_middle_encoder=dict(output_shape=(grid_size[0], grid_size[1])),
    pts_bbox_head=dict(bbox_coder=dict(pc_range=[-51.2, -51.2], voxel_size=[0.2, 0.2])),
    test_cfg=dict(pts=dict(grid_size=grid_size, pc_range=[-51.2, -51.2], voxel_size=[0.2, 0.2])),
)
