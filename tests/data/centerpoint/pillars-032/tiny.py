# The tiny preset's modules on the demo's 0.32 m pillars over +-25.6 m (160 x 160, as tiny was before it took 0.64 m
# pillars and then +-12.8 m): the shipped demo weights were trained on 0.32 m pillars, and the tests that judge what
# those weights detect (mAP gates, the node's thresholds on a recording, overflow peaks planted per scene) run them on
# the pillars they know.
_base_ = ["../../../../cp_debug/models/centerpoint/configs/tiny.py"]
point_cloud_range = [-25.6, -25.6, -3.0, 25.6, 25.6, 5.0]
voxel_size = [0.32, 0.32, 8.0]
grid_size = [160, 160, 1]
model = dict(
    data_preprocessor=dict(voxel_layer=dict(voxel_size=voxel_size, point_cloud_range=point_cloud_range)),
    pts_voxel_encoder=dict(point_cloud_range=point_cloud_range, voxel_size=voxel_size),
    pts_middle_encoder=dict(output_shape=(grid_size[1], grid_size[0])),
    pts_bbox_head=dict(bbox_coder=dict(pc_range=point_cloud_range, voxel_size=voxel_size)),
    test_cfg=dict(pts=dict(grid_size=grid_size)),
)
