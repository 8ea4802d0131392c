_base_ = ["./_base_/transfusion_lidar_pillar_second_secfpn.py"]
cp_debug_description = ("AWML Transfusion-L-offline (T4 base): 768x768 grid of 0.32 m pillars (+-122.88 m), 500 "
                        "proposals on a 192x192 head")
point_cloud_range = [-122.88, -122.88, -3.0, 122.88, 122.88, 7.0]
voxel_size = [0.32, 0.32, 10]
model = dict(
    data_preprocessor=dict(voxel_layer=dict(point_cloud_range=point_cloud_range, voxel_size=voxel_size)),
    pts_voxel_encoder=dict(point_cloud_range=point_cloud_range, voxel_size=voxel_size),
    pts_bbox_head=dict(bbox_coder=dict(pc_range=[-122.88, -122.88], voxel_size=[0.32, 0.32])),
    test_cfg=dict(pts=dict(pc_range=[-122.88, -122.88], voxel_size=[0.32, 0.32])),
)
