_base_ = ["./_base_/pillar_second_secfpn.py"]
cp_debug_description = "AWML CenterPoint <= 2.4: 760x760 grid, 0.32 m pillars, full-resolution heads"
point_cloud_range = [-121.6, -121.6, -3.0, 121.6, 121.6, 5.0]
voxel_size = [0.32, 0.32, 8.0]
grid_size = [760, 760, 1]
out_size_factor = 1
model = dict(
    data_preprocessor=dict(voxel_layer=dict(voxel_size=voxel_size, point_cloud_range=point_cloud_range,
                                            max_voxels=(64000, 64000))),
    pts_voxel_encoder=dict(point_cloud_range=point_cloud_range, voxel_size=voxel_size),
    pts_middle_encoder=dict(output_shape=(grid_size[1], grid_size[0])),
    pts_neck=dict(upsample_strides=[1, 2, 4]),
    pts_bbox_head=dict(bbox_coder=dict(pc_range=point_cloud_range, voxel_size=voxel_size,
                                       out_size_factor=out_size_factor)),
    test_cfg=dict(pts=dict(grid_size=grid_size, out_size_factor=out_size_factor)),
)
