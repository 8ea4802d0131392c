"""A deployed folder with a planted, frame-specific fault: the backbone's first ReLU of `pts_backbone.blocks.1`
saturates at 20 % of its own max, but only on frames with more than `threshold` occupied pillars (the densest)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

FAULT_TENSOR = "/pts_backbone/blocks.1/blocks.1.2/Relu_output_0"
FAULT_BLOCK = "pts_backbone.blocks.1"


def write_faulty_deployment(subject, out: Path, threshold: float) -> Path:
    import onnx
    import onnx_graphsurgeon as gs

    from cp_debug.models.centerpoint.config import BACKBONE_FILE, VOXEL_ENCODER_FILE

    enc, bb = subject.stages
    out.mkdir(parents=True, exist_ok=True)
    onnx.save(enc.onnx(), str(out / VOXEL_ENCODER_FILE))
    graph = gs.import_onnx(bb.onnx())
    tensors = graph.tensors()
    x, spatial = tensors[FAULT_TENSOR], tensors["spatial_features"]
    consumers = list(x.outputs)

    def var(name):
        return gs.Variable(name, dtype=np.float32)

    def const(name, v):
        return gs.Constant(name, np.asarray(v, dtype=np.float32))

    occ, occ_f, n, xmax, lim = var("f_occ"), var("f_occ_f"), var("f_n"), var("f_xmax"), var("f_lim")
    absx, chmax, cond, low, y = var("f_abs"), var("f_chmax"), var("f_cond"), var("f_low"), var("f_y")
    cond.dtype = np.bool_
    occ.dtype = np.bool_
    graph.nodes += [
        gs.Node("Abs", "f_abs_n", inputs=[spatial], outputs=[absx]),
        gs.Node("ReduceMax", "f_chmax_n", attrs={"axes": [1], "keepdims": 1}, inputs=[absx], outputs=[chmax]),
        gs.Node("Greater", "f_occ_n", inputs=[chmax, const("f_zero", 0.0)], outputs=[occ]),
        gs.Node("Cast", "f_cast_n", attrs={"to": onnx.TensorProto.FLOAT}, inputs=[occ], outputs=[occ_f]),
        gs.Node("ReduceSum", "f_n_n", attrs={"keepdims": 0}, inputs=[occ_f], outputs=[n]),
        gs.Node("Greater", "f_cond_n", inputs=[n, const("f_th", threshold)], outputs=[cond]),
        gs.Node("ReduceMax", "f_xmax_n", attrs={"keepdims": 0}, inputs=[x], outputs=[xmax]),
        gs.Node("Mul", "f_low_n", inputs=[xmax, const("f_share", 0.2)], outputs=[low]),
        gs.Node("Where", "f_lim_n", inputs=[cond, low, const("f_big", 3e38)], outputs=[lim]),
        gs.Node("Min", "f_min_n", inputs=[x, lim], outputs=[y]),
    ]
    for node in consumers:
        node.inputs = [y if t is x else t for t in node.inputs]
    graph.cleanup().toposort()
    onnx.save(gs.export_onnx(graph), str(out / BACKBONE_FILE))
    return out


def occupied_pillars(points: np.ndarray, cfg) -> int:
    import torch

    from cp_debug.lidar.points import prepare_points
    from cp_debug.lidar.voxelize import voxelize

    return int(voxelize(torch.as_tensor(prepare_points(points, cfg, source="points")), cfg).num_voxels)
