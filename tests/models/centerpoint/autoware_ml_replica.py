"""tier4/autoware-ml's CenterPoint as its own code builds, saves and exports it, for the tests (not used by cp_debug).

A replica of the modules' structure and names (autoware_ml/models/detection3d/: encoders/pillar.py, backbones/
second.py, necks/second_fpn.py, heads/centerpoint.py, models/common/layers/conv.py; commit 04952df, Apache-2.0,
Copyright TIER IV, Inc. and OpenMMLab), built from a composed config's resolved `model` section by `_target_`
(looked up in the table below: nothing is imported from the config). `save_lightning_checkpoint` writes the dict
Lightning's `Trainer.save_checkpoint` writes (`_checkpoint_connector.dump_checkpoint`: epoch, global_step,
pytorch-lightning_version, state_dict, loops, callbacks, optimizer_states, lr_schedulers). `export_pair` follows
autoware_ml/utils/deploy.py's `export_to_onnx` with the per-module settings `merge_module_onnx_cfg` gives, on the
export wrappers of centerpoint.py (`voxel_encoder`; `backbone`, `neck`, `bbox_head`), under the module names of
`build_export_specs` (`pts_voxel_encoder_centerpoint.onnx`, `pts_backbone_neck_head_centerpoint.onnx`).
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F


class ConvModule(nn.Module):
    def __init__(self, in_channels, out_channels, stride=1, transpose=False):
        super().__init__()
        if transpose:
            self.conv = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=stride, stride=stride, bias=False)
        else:
            self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(out_channels, eps=1e-3, momentum=0.01)
        self.activation = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.activation(self.norm(self.conv(x)))


class PFNLayer(nn.Module):
    def __init__(self, in_channels, out_channels, last_layer):
        super().__init__()
        units = out_channels if last_layer else out_channels // 2
        self.last_layer = last_layer
        self.linear = nn.Linear(in_channels, units, bias=False)
        self.norm = nn.BatchNorm1d(units, eps=1e-3, momentum=0.01)

    def forward(self, inputs):
        x = self.linear(inputs)
        x = self.norm(x.reshape(-1, x.shape[-1])).reshape_as(x)
        x = F.relu(x, inplace=True)
        x_max = x.max(dim=1, keepdim=True).values
        if self.last_layer:
            return x_max
        return torch.cat([x, x_max.repeat(1, inputs.shape[1], 1)], dim=2)


class PillarFeatureNet(nn.Module):
    def __init__(self, in_channels, feat_channels, voxel_size, point_cloud_range, with_distance=False,
                 with_cluster_center=True, with_voxel_center=True):
        super().__init__()
        channels = in_channels + 3 * with_cluster_center + 3 * with_voxel_center + with_distance
        sizes = [channels, *feat_channels]
        self.pfn_layers = nn.ModuleList(PFNLayer(sizes[i], sizes[i + 1], i == len(sizes) - 2)
                                        for i in range(len(sizes) - 1))

    def encode_decorated(self, input_features):
        for layer in self.pfn_layers:
            input_features = layer(input_features)
        return input_features


class PointPillarsScatter(nn.Module):
    def __init__(self, in_channels, output_shape):
        super().__init__()


class SECONDBackbone(nn.Module):
    def __init__(self, in_channels, out_channels, layer_nums, layer_strides):
        super().__init__()
        blocks, current = [], in_channels
        for channels, num, stride in zip(out_channels, layer_nums, layer_strides):
            blocks.append(nn.Sequential(ConvModule(current, channels, stride=stride),
                                        *(ConvModule(channels, channels) for _ in range(num))))
            current = channels
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x):
        outputs = []
        for block in self.blocks:
            x = block(x)
            outputs.append(x)
        return outputs


class SECONDFPN(nn.Module):
    def __init__(self, in_channels, out_channels, upsample_strides):
        super().__init__()
        blocks = []
        for cin, cout, stride in zip(in_channels, out_channels, upsample_strides):
            if stride >= 1:
                blocks.append(ConvModule(cin, cout, stride=int(stride), transpose=True))
            else:
                k = int(round(1 / stride))
                blocks.append(nn.Sequential(nn.Conv2d(cin, cout, kernel_size=k, stride=k, bias=False),
                                            nn.BatchNorm2d(cout, eps=1e-3, momentum=0.01), nn.ReLU(inplace=True)))
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x):
        return torch.cat([block(f) for block, f in zip(self.blocks, x)], dim=1)


class CenterHead(nn.Module):
    def __init__(self, in_channels, num_classes, shared_channels, use_velocity=True, heatmap_init_bias=-2.19,
                 **_decode_and_training):
        super().__init__()
        self.use_velocity = use_velocity
        self.shared_conv = ConvModule(in_channels, shared_channels)
        self.heatmap = self._branch(shared_channels, num_classes, heatmap_init_bias)
        self.reg = self._branch(shared_channels, 2)
        self.height = self._branch(shared_channels, 1)
        self.dim = self._branch(shared_channels, 3)
        self.rot = self._branch(shared_channels, 2)
        self.vel = self._branch(shared_channels, 2) if use_velocity else None

    @staticmethod
    def _branch(channels, out, init_bias=None):
        head = nn.Sequential(ConvModule(channels, channels), nn.Conv2d(channels, out, kernel_size=1))
        if init_bias is not None:
            nn.init.constant_(head[-1].bias, init_bias)
        return head

    def forward(self, x):
        shared = self.shared_conv(x)
        out = {name: getattr(self, name)(shared) for name in ("heatmap", "reg", "height", "dim", "rot")}
        if self.vel is not None:
            out["vel"] = self.vel(shared)
        return out


_CLASSES = {f"autoware_ml.models.detection3d.{path}": cls for path, cls in (
    ("encoders.pillar.PillarFeatureNet", PillarFeatureNet),
    ("encoders.pillar.PointPillarsScatter", PointPillarsScatter),
    ("backbones.second.SECONDBackbone", SECONDBackbone), ("necks.second_fpn.SECONDFPN", SECONDFPN),
    ("heads.centerpoint.CenterHead", CenterHead))}
_TRAINING = ("_target_", "metrics", "optimizer", "scheduler")
_HEAD_SKIP = ("class_names", "point_cloud_range", "voxel_size")


class CenterPointDetectionModel(nn.Module):
    """The LightningModule's children (its metric suites: empty ModuleLists, no state)."""

    def __init__(self, model_cfg: dict, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        for name in ("pts_voxel_encoder", "pts_middle_encoder", "pts_backbone", "pts_neck", "bbox_head"):
            kwargs = {k: v for k, v in model_cfg[name].items() if k != "_target_"}
            if name == "bbox_head":
                kwargs = {k: v for k, v in kwargs.items() if k not in _HEAD_SKIP}
            setattr(self, name, _CLASSES[model_cfg[name]["_target_"]](**kwargs))
        self._metrics_by_stage = nn.ModuleDict({"val": nn.ModuleList(), "test": nn.ModuleList()})
        _trained_looking_statistics(self, seed)
        self.eval()


def _trained_looking_statistics(model: nn.Module, seed: int) -> None:
    """BN statistics and affine terms away from their defaults (as after training), so a mix-up of two BNs shows."""
    gen = torch.Generator().manual_seed(seed + 1)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
            module.running_var.copy_(torch.rand(n, generator=gen) * 0.5 + 0.75)
            module.weight.data.copy_(torch.rand(n, generator=gen) * 0.5 + 0.75)
            module.bias.data.copy_(torch.randn(n, generator=gen) * 0.05)


def save_lightning_checkpoint(model: nn.Module, path: Path) -> Path:
    """The checkpoint `Trainer.save_checkpoint` writes for this module (ModelCheckpoint's `best.ckpt`)."""
    checkpoint = {
        "epoch": 29, "global_step": 1234, "pytorch-lightning_version": "2.5.1",
        "state_dict": model.state_dict(),
        "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"total": {"ready": 30, "completed": 29}}}},
        "callbacks": {"ModelCheckpoint{'monitor': 'val/loss', 'mode': 'min'}": {
            "monitor": "val/loss", "best_model_score": torch.tensor(0.42), "best_model_path": str(path),
            "dirpath": str(path.parent), "kth_best_model_path": "", "best_k_models": {}}},
        "optimizer_states": [{"state": {}, "param_groups": [{"lr": 1e-4, "weight_decay": 0.01, "params": []}]}],
        "lr_schedulers": [{"last_epoch": 29, "base_lrs": [1e-4]}],
    }
    torch.save(checkpoint, path)
    return path


class _VoxelEncoderExport(nn.Module):
    def __init__(self, voxel_encoder):
        super().__init__()
        self.voxel_encoder = voxel_encoder

    def forward(self, input_features):
        return self.voxel_encoder.encode_decorated(input_features)


class _BackboneNeckHeadExport(nn.Module):
    def __init__(self, backbone, neck, bbox_head):
        super().__init__()
        self.backbone, self.neck = backbone, neck
        self.bbox_head = copy.deepcopy(bbox_head).eval()  # CenterHead.prepare_for_export
        self.output_names = ["heatmap", "reg", "height", "dim", "rot"] + (["vel"] if bbox_head.use_velocity else [])

    def forward(self, spatial_features):
        outputs = self.bbox_head(self.neck(self.backbone(spatial_features)))
        return tuple(outputs[name] for name in self.output_names)


def export_pair(model: CenterPointDetectionModel, onnx_cfg: dict, folder: Path, input_features: torch.Tensor,
                spatial_features: torch.Tensor) -> list[Path]:
    """Both modules exported as `autoware-ml deploy` exports them with `deploy.onnx` = `onnx_cfg` (resolved)."""
    from torch.export import Dim

    head = _BackboneNeckHeadExport(model.pts_backbone, model.pts_neck, model.bbox_head)
    specs = {"pts_voxel_encoder_centerpoint": (_VoxelEncoderExport(model.pts_voxel_encoder), input_features,
                                               ["input_features"], ["pillar_features"]),
             "pts_backbone_neck_head_centerpoint": (head, spatial_features, ["spatial_features"], head.output_names)}
    shared = {k: v for k, v in onnx_cfg.items() if k != "modules"}
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, (module, arg, params, outputs) in specs.items():
        cfg = {**shared, **onnx_cfg["modules"][name]}
        dynamo = cfg.get("dynamo", True)
        kwargs = dict(input_names=list(cfg.get("input_names", params)), output_names=outputs,
                      opset_version=cfg["opset_version"], dynamo=dynamo,
                      do_constant_folding=cfg.get("do_constant_folding", True))
        if dynamo:
            shapes = cfg.get("dynamic_shapes")
            kwargs["dynamic_shapes"] = None if shapes is None else tuple(
                {int(i): Dim(d) for i, d in shapes[p].items()} if p in shapes else None for p in params)
        else:
            kwargs["dynamic_axes"] = cfg.get("dynamic_axes") or cfg.get("dynamic_shapes")
        path = folder / f"{name}.onnx"
        torch.onnx.export(module.eval(), (arg,), str(path), **kwargs)
        data = path.with_suffix(".onnx.data")
        if data.exists():  # merge_onnx_external_data
            import onnx
            from onnx.external_data_helper import convert_model_from_external_data

            proto = onnx.load(str(path), load_external_data=True)
            convert_model_from_external_data(proto)
            onnx.save_model(proto, str(path))
            data.unlink()
        paths.append(path)
    return paths
