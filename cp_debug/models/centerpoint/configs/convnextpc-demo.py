# AWML's CenterPoint-ConvNeXtPC (pillar_020_convnext_small_secfpn_4xb8_121m_base: BackwardPillarFeatureNet,
# ConvNeXt_PC small, SECONDFPN to stride 4) on the demo grid: 320 x 320 pillars of 0.32 m, heads 80 x 80.
_base_ = ["./_base_/pillar_second_secfpn.py"]
cp_debug_description = ("AWML ConvNeXt-PC small (BackwardPillarFeatureNet, LayerNorm/GELU blocks) "
                        "on the 320x320 demo grid")
point_cloud_range = [-51.2, -51.2, -3.0, 51.2, 51.2, 5.0]
voxel_size = [0.32, 0.32, 8.0]
grid_size = [320, 320, 1]
out_size_factor = 4
model = dict(
    data_preprocessor=dict(voxel_layer=dict(voxel_size=voxel_size, point_cloud_range=point_cloud_range,
                                            max_voxels=(30000, 30000))),
    pts_voxel_encoder=dict(type="BackwardPillarFeatureNet", point_cloud_range=point_cloud_range,
                           voxel_size=voxel_size),
    pts_middle_encoder=dict(output_shape=(grid_size[1], grid_size[0])),
    pts_backbone=dict(
        _delete_=True,
        type="ConvNeXt_PC",
        in_channels=32,
        out_channels=[32, 64, 128, 128, 128],
        depths=[3, 2, 1, 1, 1],
        out_indices=[2, 3, 4],
        drop_path_rate=0.0,
        layer_scale_init_value=1.0,
        gap_before_final_norm=False,
        with_cp=True,
    ),
    pts_neck=dict(in_channels=[128, 128, 128], upsample_strides=[1, 2, 4]),
    pts_bbox_head=dict(
        bbox_coder=dict(pc_range=point_cloud_range, voxel_size=voxel_size, out_size_factor=out_size_factor),
        separate_head=dict(type="SeparateHead", init_bias=-2.19, final_kernel=1),
    ),
    test_cfg=dict(pts=dict(grid_size=grid_size, out_size_factor=out_size_factor)),
)
