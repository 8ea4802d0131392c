"""The oracle for cp_debug's TransFusion-L: AWML's OWN TransFusion-L (tier4/AWML projects/TransFusion on
mmdet3d 1.4 + AWML's projects/BEVFusion) run on a deterministic synthetic scan, outputs written to an .npz.

Runs in the venv of benchmarks/awml_env.sh; imports nothing of cp_debug.

    # the committed tiny reference (< 3 MB)
    /work/venv-awml/bin/python benchmarks/awml_transfusion_reference.py \
        --config tests/data/transfusion/awml_tiny_config.py --out tests/data/transfusion/awml_reference_tiny.npz \
        --num-points 10000 --compress --max-intermediate-elems 300000
    # AWML's real T4 config, as is (~250 MB: kept out of git)
    T4=/work/awml-full/projects/TransFusion/configs/t4dataset/Transfusion-L
    /work/venv-awml/bin/python benchmarks/awml_transfusion_reference.py \
        --config $T4/transfusion_lidar_pillar_second_secfpn_1xb1_90m-768grid-t4base.py \
        --out /work/awml-ref/awml_reference_t4base_768.npz --num-points 100000 --max-intermediate-elems 20000000

What it does, as AWML's tools do: mmengine Config.fromfile, the config's custom_imports
(projects.TransFusion.transfusion must import; the dataset/metric ones of autoware_ml are tried and, if their extra
packages are missing, skipped and recorded), init_default_scope("mmdet3d"), MODELS.build(cfg.model) under
torch.manual_seed(seed), model.init_weights(), then BN running stats / affine, LayerNorm affine and every bias are
randomized a bit more (seeded) so that a wrong pairing of weights cannot pass, eval mode. The scan is voxelized by the
model's own data_preprocessor (Det3DDataPreprocessor -> mmcv Voxelization, hard), then extract_feat and
pts_bbox_head.forward; decoded boxes from pts_bbox_head.predict (a second forward; AWML's bbox coder decodes in place,
so the raw outputs are cloned first).

npz contents (see tests/data/transfusion/README.md): state_dict/<key>, points, voxels, num_points, coors,
voxel_centers, intermediate/<module> (voxel encoder, backbone levels, neck), bev_pos, the head outputs under AWML's
names, query_labels, boxes_3d / scores_3d / labels_3d, and config_json.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import types

import numpy as np


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="an AWML TransFusion config file (or one that _base_s one)")
    p.add_argument("--out", required=True, help="the .npz to write")
    p.add_argument("--awml-root", default=os.environ.get("AWML_SRC", "/work/awml-full"),
                   help="an extracted AWML checkout (its root goes on sys.path)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-points", type=int, default=None, help="points in the synthetic scan (default: by range)")
    p.add_argument("--no-intermediates", action="store_true", help="leave intermediate/* out of the npz")
    p.add_argument("--max-intermediate-elems", type=int, default=None,
                   help="leave out intermediate/* arrays with more elements than this (keeps a tiny npz small)")
    p.add_argument("--compress", action="store_true", help="np.savez_compressed")
    p.add_argument("--no-balance-classes", action="store_true",
                   help="keep heatmap_head's last bias as drawn (random weights then propose one or two classes only)")
    return p.parse_args()


def stub_bevfusion_ops():
    """AWML's projects/BEVFusion/bevfusion/__init__ imports its CUDA extensions (bev_pool_ext, voxel_layer) for
    BEVFusion's camera branch and its own Voxelization; TransFusion-L uses neither (it voxelizes with mmcv through
    Det3DDataPreprocessor). bev_pool_ext cannot be built without CUDA, so both are stand-ins that raise if called."""
    def raiser(name):
        def f(*a, **k):
            raise RuntimeError(f"{name}: AWML BEVFusion CUDA op stubbed in the CPU oracle")
        return f
    for mod, fns in {
        "projects.BEVFusion.bevfusion.ops.bev_pool.bev_pool_ext": ["bev_pool_forward", "bev_pool_backward"],
        "projects.BEVFusion.bevfusion.ops.voxel.voxel_layer": [
            "dynamic_voxelize", "hard_voxelize", "dynamic_point_to_voxel_forward", "dynamic_point_to_voxel_backward"],
    }.items():
        m = types.ModuleType(mod)
        for fn in fns:
            setattr(m, fn, raiser(f"{mod}.{fn}"))
        sys.modules[mod] = m


def synthetic_scan(pc_range, n_points, seed):
    """Deterministic scan: ground + box-shaped clusters (cars, a truck, a bus, pedestrians, a bicycle) + a few points
    out of range. Columns x, y, z, intensity, time (float32)."""
    rng = np.random.default_rng(seed)
    x0, y0, z0, x1, y1, z1 = pc_range
    ext = min(x1 - x0, y1 - y0) / 2.0
    n_ground = int(n_points * 0.55)
    n_out = max(int(n_points * 0.02), 8)
    n_obj = n_points - n_ground - n_out
    r = np.sqrt(rng.uniform(0.0, 1.0, n_ground)) * ext * 0.98
    a = rng.uniform(-np.pi, np.pi, n_ground)
    ground = np.stack([r * np.cos(a), r * np.sin(a), -1.8 + 0.03 * rng.standard_normal(n_ground)], 1)
    # (cx, cy) as fractions of the half-extent, size (l, w, h), yaw
    boxes = [
        (0.30, 0.10, 4.5, 1.9, 1.6, 0.3), (-0.40, 0.35, 4.6, 1.8, 1.5, 1.2), (0.55, -0.45, 4.4, 1.9, 1.7, -0.6),
        (-0.15, -0.60, 10.0, 2.6, 3.2, 0.05), (0.10, 0.65, 12.0, 2.9, 3.3, 1.57),
        (-0.65, -0.10, 0.6, 0.6, 1.7, 0.0), (0.70, 0.30, 0.6, 0.6, 1.7, 0.0), (-0.25, 0.05, 1.8, 0.6, 1.3, 2.2),
    ]
    w = np.array([b[2] * b[3] * b[4] for b in boxes]) ** 0.5
    counts = np.floor(w / w.sum() * n_obj).astype(int)
    counts[0] += n_obj - counts.sum()
    obj = []
    for (fx, fy, l, wd, h, yaw), n in zip(boxes, counts):
        # points on the box surface: pick a face, uniform on it
        u = rng.uniform(-0.5, 0.5, (n, 3)) * np.array([l, wd, h])
        face = rng.integers(0, 5, n)  # +-x, +-y, top
        u[face == 0, 0] = l / 2
        u[face == 1, 0] = -l / 2
        u[face == 2, 1] = wd / 2
        u[face == 3, 1] = -wd / 2
        u[face == 4, 2] = h / 2
        c, s = np.cos(yaw), np.sin(yaw)
        xy = u[:, :2] @ np.array([[c, s], [-s, c]])
        obj.append(np.stack([xy[:, 0] + fx * ext, xy[:, 1] + fy * ext, u[:, 2] - 1.8 + h / 2], 1))
    obj = np.concatenate(obj) + 0.02 * rng.standard_normal((n_obj, 3))
    out = np.stack([rng.uniform(x1, x1 + 10.0, n_out), rng.uniform(y0, y1, n_out), rng.uniform(z0, z1, n_out)], 1)
    out[: n_out // 2, 2] = z1 + 1.0  # above the range
    out[: n_out // 2, 0] = rng.uniform(x0 * 0.5, x1 * 0.5, n_out // 2)
    xyz = np.concatenate([ground, obj, out])
    intensity = np.concatenate([rng.uniform(0, 40, n_ground), rng.uniform(20, 255, n_obj), rng.uniform(0, 255, n_out)])
    t = rng.uniform(0.0, 0.1, len(xyz))
    pts = np.concatenate([xyz, intensity[:, None], t[:, None]], 1).astype(np.float32)
    return pts[rng.permutation(len(pts))]


def perturb(model, seed):
    """A wrong pairing of weights must not pass: BN stats/affine, LN affine and all biases moved off their inits."""
    import torch
    from torch import nn
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(0.2 * torch.randn(n, generator=g))
                m.running_var.copy_(0.5 + torch.rand(n, generator=g))
                if m.affine:
                    m.weight.copy_(0.8 + 0.4 * torch.rand(n, generator=g))
                    m.bias.copy_(0.1 * torch.randn(n, generator=g))
            elif isinstance(m, nn.LayerNorm) and m.elementwise_affine:
                m.weight.copy_(0.8 + 0.4 * torch.rand(m.weight.shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
        for name, p in model.named_parameters():
            if name.endswith("bias") and not any(k in name for k in ("bn.", "norm", "norms.")):
                p.add_(0.05 * torch.randn(p.shape, generator=g))


def build_model(config, seed):
    """AWML's config -> its TransFusion: seeded, init_weights(), perturbed, eval. -> (cfg, model, done, skipped)"""
    import torch
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    cfg = Config.fromfile(config, import_custom_modules=False)
    done, skipped = [], {}
    for name in cfg.get("custom_imports", {}).get("imports", []):
        try:
            importlib.import_module(name)
            done.append(name)
        except ImportError as e:  # autoware_ml's t4 metrics need perception_eval / nuscenes: not model code
            if name.startswith("projects."):
                raise
            skipped[name] = f"{type(e).__name__}: {e}"
    init_default_scope(cfg.get("default_scope", "mmdet3d"))
    from mmdet3d.registry import MODELS

    torch.manual_seed(seed)
    np.random.seed(seed)
    model = MODELS.build(cfg.model)
    model.init_weights()
    perturb(model, seed)
    model.eval()
    return cfg, model, done, skipped


def add_hooks(model, inter):
    """Forward hooks that copy intermediate outputs into inter; returns the handles."""
    def keep(name):
        def hook(_m, _i, out):
            outs = out if isinstance(out, (list, tuple)) else [out]
            for k, o in enumerate(outs):
                inter[f"{name}.{k}" if len(outs) > 1 else name] = o.detach().clone()
        return hook
    hooks = [getattr(model, n).register_forward_hook(keep(n))
             for n in ("pts_voxel_encoder", "pts_middle_encoder", "pts_backbone", "pts_neck")]
    hooks.append(model.pts_bbox_head.shared_conv.register_forward_hook(keep("pts_bbox_head.shared_conv")))
    # the decorated per-point features the first PFN layer sees (N, max_num_points, in_channels + 6)
    hooks.append(model.pts_voxel_encoder.pfn_layers[0].register_forward_pre_hook(
        lambda _m, a: inter.__setitem__("pts_voxel_encoder.pfn_layers.0.input", a[0].detach().clone())))
    return hooks


def run(model, points, intermediates):
    """Voxelize with the model's data_preprocessor, extract_feat, head forward, head predict."""
    import torch
    from mmdet3d.structures import Det3DDataSample, LiDARInstance3DBoxes

    sample = Det3DDataSample(metainfo=dict(box_type_3d=LiDARInstance3DBoxes, sample_idx=0))
    inter = {}
    hooks = add_hooks(model, inter) if intermediates else []
    with torch.no_grad():
        data = model.data_preprocessor({"inputs": {"points": [torch.from_numpy(points)]}, "data_samples": [sample]},
                                       training=False)
        inputs = data["inputs"]
        batch_metas = [s.metainfo for s in data["data_samples"]]
        # mmdet3d's PillarFeatureNet (legacy=True, the default AWML keeps) overwrites voxels[..., :3] in place with
        # the offsets from the pillar centre: keep the voxelizer's output as it was fed in
        vox = {k: v.clone() for k, v in inputs["voxels"].items()}
        _, pts_feats = model.extract_feat(inputs, batch_metas)
        head = model.pts_bbox_head
        preds = head(pts_feats, batch_metas)  # a tuple over feature levels (1) of a list with one dict
        for h in hooks:
            h.remove()
        assert len(preds) == 1 and len(preds[0]) == 1, "one feature level, one dict"
        raw = {k: v.detach().clone() for k, v in preds[0][0].items()}
        query_labels = head.query_labels.detach().clone()
        dets = head.predict(pts_feats, batch_metas)[0]
        assert torch.equal(head.query_labels, query_labels), "second forward picked other proposals"
    return vox, inter, raw, query_labels, dets


def balance_classes(model, points):
    """Random weights make one or two classes win every proposal, leaving class_encoding's other columns and the other
    classes' local-max paths untested. Shift heatmap_head's last bias per class by minus the midpoint of that class's
    k-th and (k+1)-th largest dense logits on this scan (k = ceil(P / C)), so each class has about P / C cells above 0
    (the midpoint, not the k-th value itself, which would put one cell of every class at exactly 0). Returns the
    shift."""
    import torch
    from mmdet3d.structures import Det3DDataSample, LiDARInstance3DBoxes

    sample = Det3DDataSample(metainfo=dict(box_type_3d=LiDARInstance3DBoxes, sample_idx=0))
    head = model.pts_bbox_head
    with torch.no_grad():
        data = model.data_preprocessor({"inputs": {"points": [torch.from_numpy(points)]}, "data_samples": [sample]},
                                       training=False)
        _, feats = model.extract_feat(data["inputs"], [s.metainfo for s in data["data_samples"]])
        dense = head.heatmap_head(head.shared_conv(feats[0]))  # (1, C, H, W)
        k = -(-head.num_proposals // head.num_classes)
        top = dense.flatten(2)[0].topk(k + 1, dim=-1).values
        mid = (top[:, k - 1] + top[:, k]) / 2
        head.heatmap_head[-1].bias.sub_(mid)
    return mid.tolist()


def ranking_margins(dense_heatmap, num_proposals):
    """How safe the top-P pick is: the gap between the P-th and (P+1)-th masked scores (a smaller one lets another
    implementation pick other proposals) and the smallest gap between consecutive ones among the first P (a smaller
    one lets it order them differently)."""
    import torch
    import torch.nn.functional as F

    hm = dense_heatmap.sigmoid()
    lm = torch.zeros_like(hm)
    lm[:, :, 1:-1, 1:-1] = F.max_pool2d(hm, kernel_size=3, stride=1, padding=0)
    v = (hm * (hm == lm)).flatten().sort(descending=True).values[: num_proposals + 1].double()
    return dict(boundary_gap=float(v[-2] - v[-1]), min_gap_within_top=float((v[:-2] - v[1:-1]).min()),
                pth_score=float(v[-2]))


def git_rev(path):
    try:
        return subprocess.run(["git", "-C", path, "log", "-1", "--format=%H"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def describe(args, cfg, model, n_points, done, skipped, awml):
    import mmcv
    import mmdet
    import mmdet3d
    import mmengine
    import torch

    head = model.pts_bbox_head
    return dict(
        config_file=os.path.abspath(args.config), seed=args.seed, num_points=n_points,
        model=cfg.model.to_dict(), custom_imports_done=done, custom_imports_skipped=skipped,
        versions=dict(torch=torch.__version__, mmcv=mmcv.__version__, mmdet=mmdet.__version__,
                      mmdet3d=mmdet3d.__version__, mmengine=mmengine.__version__, numpy=np.__version__),
        awml_root=awml, awml_commit=git_rev(os.environ.get("AWML_MIRROR", "/work/.mirror/tier4+AWML/repo")),
        perturbation="BN running_mean~0.2N(0,1), running_var~U(0.5,1.5), BN/LN weight~U(0.8,1.2), "
                     "bias~0.1N(0,1); other biases += 0.05N(0,1); torch.Generator seed = seed+1",
        head=dict(num_classes=head.num_classes, num_proposals=head.num_proposals,
                  nms_kernel_size=head.nms_kernel_size, num_decoder_layers=head.num_decoder_layers,
                  auxiliary=head.auxiliary, test_cfg=dict(head.test_cfg)),
    )


def summarize(path, out, skipped):
    print(f"wrote {path} ({os.path.getsize(path) / 1e6:.2f} MB), {len(out)} arrays, "
          f"{sum(1 for k in out if k.startswith('state_dict/'))} state-dict entries")
    if skipped:
        print("custom_imports skipped:", json.dumps(skipped, indent=1))
    for k, v in out.items():
        if k.startswith("state_dict/") or k == "config_json":
            continue
        s = f"  {k:40s} {str(v.dtype):8s} {str(v.shape):22s}"
        if v.size and np.issubdtype(v.dtype, np.number):
            f = v.astype(np.float64)
            s += f" min {f.min():+.4g} max {f.max():+.4g} mean {f.mean():+.4g} std {f.std():.4g}"
        print(s)


def main():
    args = parse_args()
    awml = os.path.abspath(args.awml_root)
    sys.path.insert(0, awml)
    stub_bevfusion_ops()
    import torch
    from mmengine.logging import MMLogger

    MMLogger.get_instance("mmengine", log_level="WARNING")  # init_weights' per-parameter INFO lines
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    cfg, model, done, skipped = build_model(args.config, args.seed)

    pc_range = list(cfg.model.data_preprocessor.voxel_layer.point_cloud_range)
    n_points = args.num_points or int(min(120_000, max(12_000, 60 * (pc_range[3] - pc_range[0]))))
    points = synthetic_scan(pc_range, n_points, args.seed)
    shift = None if args.no_balance_classes else balance_classes(model, points)
    vox, inter, raw, query_labels, dets = run(model, points, not args.no_intermediates)

    out = {f"state_dict/{k}": v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    out["points"] = points
    for k in ("voxels", "num_points", "coors", "voxel_centers"):
        out[k] = vox[k].numpy()
    out["bev_pos"] = model.pts_bbox_head.bev_pos.numpy()
    for k, v in inter.items():
        if args.max_intermediate_elems is None or v.numel() <= args.max_intermediate_elems:
            out[f"intermediate/{k}"] = v.numpy()
    out.update({k: v.numpy() for k, v in raw.items()})
    out["query_labels"] = query_labels.numpy()
    out["boxes_3d"] = dets.bboxes_3d.tensor.numpy()
    out["scores_3d"] = dets.scores_3d.numpy()
    out["labels_3d"] = dets.labels_3d.numpy()
    meta = describe(args, cfg, model, len(points), done, skipped, awml)
    meta["heatmap_head_bias_shift"] = shift  # subtracted from pts_bbox_head.heatmap_head.1.bias (in the state dict)
    meta["ranking_margins"] = ranking_margins(raw["dense_heatmap"], model.pts_bbox_head.num_proposals)
    print("ranking margins (sigmoid scores):", meta["ranking_margins"])
    out["config_json"] = np.array(json.dumps(meta, default=str))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    (np.savez_compressed if args.compress else np.savez)(args.out, **out)
    summarize(args.out, out, skipped)


if __name__ == "__main__":
    main()
