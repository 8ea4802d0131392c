"""mmdet3d's CenterHead with one task (SeparateHead), returning the raw head maps.

Names follow mmdet3d so state_dict keys match: `shared_conv.conv` / `.bn` (mmcv ConvModule),
`task_heads.0.<head>.0.conv` / `.0.bn` and `task_heads.0.<head>.1` (Conv2d with bias), heads registered in the
order reg, height, dim, rot, vel, heatmap.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class ConvModule(nn.Module):
    """mmcv ConvModule with conv -> bn -> ReLU (no conv bias when followed by BN); `dims` 1 gives Conv1d + BN1d
    (conv_cfg Conv1d, norm_cfg BN1d, as TransFusion's prediction heads)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, eps: float, momentum: float,
                 dims: int = 2):
        super().__init__()
        conv, bn = (nn.Conv1d, nn.BatchNorm1d) if dims == 1 else (nn.Conv2d, nn.BatchNorm2d)
        self.conv = conv(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = bn(out_channels, eps=eps, momentum=momentum)
        self.activate = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activate(self.bn(self.conv(x)))


class SeparateHead(nn.Module):
    """One nn.Sequential per head: ConvModule(in -> head_conv, inner_kernel) then Conv2d(head_conv -> C,
    final_kernel, bias). mmdet3d's first conv takes final_kernel (inner_kernel None); autoware-ml's is a 3x3.
    `dims` 1: Conv1d / BN1d throughout (mmdet3d's SeparateHead with conv_cfg Conv1d, as TransFusionHead builds it)."""

    def __init__(
        self,
        in_channels: int,
        heads: Sequence[tuple[str, int]],
        *,
        head_conv: int = 64,
        final_kernel: int = 1,
        inner_kernel: int | None = None,
        init_bias: float = -4.595,
        eps: float = 1e-5,
        momentum: float = 0.1,
        dims: int = 2,
    ):
        super().__init__()
        self.head_names = tuple(name for name, _ in heads)
        self.init_bias = init_bias
        inner = final_kernel if inner_kernel is None else inner_kernel
        conv = nn.Conv1d if dims == 1 else nn.Conv2d
        for name, classes in heads:
            seq = nn.Sequential(
                ConvModule(in_channels, head_conv, inner, eps=eps, momentum=momentum, dims=dims),
                conv(head_conv, classes, final_kernel, padding=final_kernel // 2, bias=True),
            )
            self.add_module(name, seq)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: getattr(self, name)(x) for name in self.head_names}


class CenterHead(nn.Module):
    def __init__(
        self,
        in_channels: int = 384,
        num_classes: int = 5,
        common_heads: Sequence[tuple[str, int]] = (("reg", 2), ("height", 1), ("dim", 3), ("rot", 2), ("vel", 2)),
        *,
        share_conv_channel: int = 64,
        head_conv: int = 64,
        inner_kernel: int | None = None,
        init_bias: float = -4.595,
        eps: float = 1e-5,
        momentum: float = 0.1,
    ):
        super().__init__()
        self.shared_conv = ConvModule(in_channels, share_conv_channel, 3, eps=eps, momentum=momentum)
        heads = [*common_heads, ("heatmap", num_classes)]
        self.task_heads = nn.ModuleList(
            [
                SeparateHead(
                    share_conv_channel, heads, head_conv=head_conv, inner_kernel=inner_kernel, init_bias=init_bias,
                    eps=eps, momentum=momentum,
                )
            ]
        )

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Neck output (B, 384, H, W) -> raw head maps by name (no sigmoid, no exp)."""
        return self.task_heads[0](self.shared_conv(x))
