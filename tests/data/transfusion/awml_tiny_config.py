# A TINY TransFusion-L for the AWML oracle (benchmarks/awml_transfusion_reference.py): AWML's real T4 config
# 90m-768grid-t4base with a 128x128 grid (+-15.36 m at 0.24 m), 20 proposals and narrower channels, everything else
# (layers, kernels, strides, norms, heads, 5 T4 classes, max_num_points 20) as in AWML. AWML_SRC: an extracted AWML
# checkout (benchmarks/awml_env.sh makes one at /work/awml-full).
_base_ = [
    "{{$AWML_SRC:/work/awml-full}}/projects/TransFusion/configs/t4dataset/Transfusion-L/"
    "transfusion_lidar_pillar_second_secfpn_1xb1_90m-768grid-t4base.py"
]

point_cloud_range = [-15.36, -15.36, -3.0, 15.36, 15.36, 7.0]
voxel_size = [0.24, 0.24, 10]
grid_size = [128, 128, 1]
out_size_factor = 4
pillar_feat_channels = [32, 32]
backbone_channels = [16, 32, 64]
neck_channels = [32, 32, 32]
hidden = 32
num_proposals = 20

model = dict(
    data_preprocessor=dict(voxel_layer=dict(point_cloud_range=point_cloud_range, voxel_size=voxel_size)),
    pts_voxel_encoder=dict(
        feat_channels=pillar_feat_channels, voxel_size=voxel_size, point_cloud_range=point_cloud_range
    ),
    pts_middle_encoder=dict(in_channels=pillar_feat_channels[-1], output_shape=(grid_size[0], grid_size[1])),
    pts_backbone=dict(in_channels=pillar_feat_channels[-1], out_channels=backbone_channels),
    pts_neck=dict(in_channels=backbone_channels, out_channels=neck_channels),
    pts_bbox_head=dict(
        num_proposals=num_proposals,
        in_channels=sum(neck_channels),
        hidden_channel=hidden,
        decoder_layer=dict(
            self_attn_cfg=dict(embed_dims=hidden, num_heads=4),
            cross_attn_cfg=dict(embed_dims=hidden, num_heads=4),
            ffn_cfg=dict(embed_dims=hidden, feedforward_channels=2 * hidden),
            pos_encoding_cfg=dict(input_channel=2, num_pos_feats=hidden),
        ),
        bbox_coder=dict(pc_range=point_cloud_range[0:2], voxel_size=voxel_size[:2], out_size_factor=out_size_factor),
    ),
    train_cfg=dict(pts=dict(grid_size=grid_size, voxel_size=voxel_size, point_cloud_range=point_cloud_range)),
    test_cfg=dict(pts=dict(grid_size=grid_size, pc_range=point_cloud_range[0:2], voxel_size=voxel_size[:2])),
)
