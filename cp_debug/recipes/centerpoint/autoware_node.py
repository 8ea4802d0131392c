"""Autoware's CenterPoint node (`autoware_lidar_centerpoint`) as CenterPoint's recipe knows it: which parameter files
are the node's (`AUTOWARE_NODE`, handed to `data.autoware_params.read_params`: its lint, and `cpdebug replay`'s glue
through its `replay` plug-in) and the node's fixed sizes its lint checks a model against."""

from __future__ import annotations

from cp_debug.data.autoware_params import AutowareNode

# The first component of what the node declares (autoware_lidar_centerpoint's node, centerpoint_*.param.yaml and the
# ml_package manifest): a file holding none of them is not the node's parameter file.
AUTOWARE_NODE = AutowareNode("CenterPoint", frozenset({
    "model_params", "post_process_params", "densification_params", "encoder_onnx_path", "head_onnx_path",
    "encoder_engine_path", "head_engine_path", "trt_precision", "cloud_capacity"}))
# The node's fixed sizes (include/autoware/lidar_centerpoint/centerpoint_config.hpp): points per pillar and pillar
# channels are constants of the node, not parameters.
NODE_POINTS_PER_PILLAR = 32
NODE_PILLAR_CHANNELS = 32
NODE_HEAD_CHANNELS = {"heatmap": None, "reg": 2, "height": 1, "dim": 3, "rot": 2, "vel": 2}
NODE_VARIANCE_CHANNELS = {"heatmap": None, "reg": 4, "height": 2, "dim": 6, "rot": 4, "vel": 4}
