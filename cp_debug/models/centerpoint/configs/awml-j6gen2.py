_base_ = ["./_base_/pillar_second_secfpn.py"]
cp_debug_description = "AWML CenterPoint J6Gen2: as base with intensity, x,y,z,intensity,t"
lidar_sweep_dims = [0, 1, 2, 3, 4]
test_pipeline = [
    dict(type="LoadPointsFromFile", coord_type="LIDAR", load_dim=5, use_dim=5),
    dict(type="LoadPointsFromMultiSweeps", sweeps_num=1, load_dim=5, use_dim=lidar_sweep_dims, test_mode=True),
]
model = dict(pts_voxel_encoder=dict(in_channels=5))
