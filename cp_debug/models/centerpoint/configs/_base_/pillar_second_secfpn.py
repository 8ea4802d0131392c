# cp_debug's CenterPoint presets as config files, in AWML's (mmengine) syntax: this base is AWML's
# second_secfpn_8xb16_121m_base_amp model (1020 x 1020 grid, 0.24 m pillars, x, y, z, t); each preset file
# changes what differs. `cpdebug ... --config FILE.py` reads these and AWML's own configs alike.
point_cloud_range = [-122.4, -122.4, -3.0, 122.4, 122.4, 5.0]
voxel_size = [0.24, 0.24, 8.0]
grid_size = [1020, 1020, 1]
out_size_factor = 2
point_load_dim = 5  # x, y, z, intensity, ring / time lag
lidar_sweep_dims = [0, 1, 2, 4]
class_names = ["car", "truck", "bus", "bicycle", "pedestrian"]

test_pipeline = [
    dict(type="LoadPointsFromFile", coord_type="LIDAR", load_dim=point_load_dim, use_dim=point_load_dim),
    dict(type="LoadPointsFromMultiSweeps", sweeps_num=1, load_dim=point_load_dim, use_dim=lidar_sweep_dims,
         pad_empty_sweeps=True, remove_close=True, test_mode=True),
    dict(type="PointsRangeFilter", point_cloud_range=point_cloud_range),
]

model = dict(
    type="CenterPoint",
    data_preprocessor=dict(
        type="Det3DDataPreprocessor",
        voxel=True,
        voxel_layer=dict(max_num_points=32, voxel_size=voxel_size, point_cloud_range=point_cloud_range,
                         max_voxels=(96000, 96000), deterministic=True),
    ),
    pts_voxel_encoder=dict(
        type="PillarFeatureNet", in_channels=4, feat_channels=[32, 32], with_distance=False,
        with_cluster_center=True, with_voxel_center=True, point_cloud_range=point_cloud_range,
        voxel_size=voxel_size, norm_cfg=dict(type="BN1d", eps=1e-3, momentum=0.01), legacy=False,
    ),
    pts_middle_encoder=dict(type="PointPillarsScatter", in_channels=32, output_shape=(grid_size[1], grid_size[0])),
    pts_backbone=dict(
        type="SECOND", in_channels=32, out_channels=[64, 128, 256], layer_nums=[3, 5, 5], layer_strides=[1, 2, 2],
        norm_cfg=dict(type="BN", eps=1e-3, momentum=0.01), conv_cfg=dict(type="Conv2d", bias=False),
    ),
    pts_neck=dict(
        type="SECONDFPN", in_channels=[64, 128, 256], out_channels=[128, 128, 128], upsample_strides=[0.5, 1, 2],
        norm_cfg=dict(type="BN", eps=1e-3, momentum=0.01), upsample_cfg=dict(type="deconv", bias=False),
        use_conv_for_no_stride=True,
    ),
    pts_bbox_head=dict(
        type="CenterHead",
        in_channels=384,
        tasks=[dict(num_class=5, class_names=class_names)],
        common_heads=dict(reg=(2, 2), height=(1, 2), dim=(3, 2), rot=(2, 2), vel=(2, 2)),
        share_conv_channel=64,
        bbox_coder=dict(type="CenterPointBBoxCoder", pc_range=point_cloud_range, voxel_size=voxel_size,
                        post_center_range=[-200.0, -200.0, -10.0, 200.0, 200.0, 10.0], max_num=500,
                        score_threshold=0.1, out_size_factor=out_size_factor, code_size=9),
        separate_head=dict(type="CustomSeparateHead", init_bias=-4.595, final_kernel=1),
        norm_bbox=True,
    ),
    test_cfg=dict(pts=dict(nms_type="circle", min_radius=[1.0], post_max_size=100, grid_size=grid_size,
                           out_size_factor=out_size_factor)),
)
