"""BatchNorm folded into the conv that feeds it, paired by DATA FLOW (torch.fx), with a channel check.

Pairing by module order is how AWML's first fusion broke: a conv registered next to a BN that does not read
its output got that BN's statistics ("The size of tensor a (256) must match the size of tensor b (128)").
Here the module graph is traced symbolically and a BN is paired with a conv only where the BN's input IS the
conv's output and nothing else reads that output; the conv's output channels must equal the BN's features,
or the pair is refused with both module names. ConvTranspose2d weights are [in, out, kH, kW]: the BN scale
goes on dim 1 (torch's fuse_conv_bn_weights with transpose=True).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from cp_debug.errors import BadInputError
from cp_debug.quant.quantizers import set_module

_CONVS = (nn.Conv2d, nn.ConvTranspose2d)
_BNS = (nn.BatchNorm2d,)


@dataclass(frozen=True)
class ConvBnPair:
    conv: str
    bn: str


def _trace(module: nn.Module):
    import torch.fx

    try:
        return torch.fx.symbolic_trace(module)
    except Exception as err:  # noqa: BLE001 - fx raises many kinds for untraceable control flow
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise BadInputError(
            f"BN fusion needs the data flow of {type(module).__name__}, and torch.fx cannot trace it ({first}); "
            "fuse a traceable sub-module (e.g. the backbone/neck/head stage) instead"
        ) from None


def find_conv_bn_pairs(module: nn.Module) -> list[ConvBnPair]:
    """(conv, BN) pairs of `module` by data flow, in graph order; raises BadInputError naming both modules
    where a conv feeds a BN of another width."""
    gm = _trace(module)
    mods = dict(module.named_modules())
    pairs = []
    for node in gm.graph.nodes:
        if node.op != "call_module" or not isinstance(mods.get(node.target), _BNS) or not node.args:
            continue
        src = node.args[0]
        if getattr(src, "op", None) != "call_module" or not isinstance(mods.get(src.target), _CONVS):
            continue
        if len(src.users) != 1:
            continue  # the conv's raw output is read elsewhere too: folding the BN would change that reader
        conv, bn = mods[src.target], mods[node.target]
        out = int(conv.weight.shape[1 if isinstance(conv, nn.ConvTranspose2d) else 0]) * (
            conv.groups if isinstance(conv, nn.ConvTranspose2d) else 1)
        if out != bn.num_features:
            raise BadInputError(
                f"BN fusion: {src.target} ({type(conv).__name__}, {out} output channels) feeds {node.target} "
                f"({type(bn).__name__}, {bn.num_features} features): the pair does not fit, the model or its "
                "checkpoint is inconsistent"
            )
        pairs.append(ConvBnPair(src.target, node.target))
    return pairs


@torch.no_grad()
def fold_pairs(root: nn.Module, pairs: list[ConvBnPair], prefix: str = "") -> nn.Module:
    """Fold each BN's eval statistics into its conv (which gains a bias) and replace the BN by nn.Identity,
    in place on `root` (names are relative to `root`, after `prefix`). Returns `root`."""
    from torch.nn.utils.fusion import fuse_conv_bn_weights

    for p in pairs:
        conv = root.get_submodule(prefix + p.conv)
        bn = root.get_submodule(prefix + p.bn)
        transpose = isinstance(conv, nn.ConvTranspose2d)
        if transpose and conv.groups != 1:
            raise BadInputError(f"BN fusion: {p.conv} is a grouped ConvTranspose2d "
                                f"(groups={conv.groups}); not supported")
        w, b = fuse_conv_bn_weights(conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight,
                                    bn.bias, transpose=transpose)
        conv.weight = nn.Parameter(w.detach().clone())
        conv.bias = nn.Parameter(b.detach().clone())
        set_module(root, prefix + p.bn, nn.Identity())
    return root


def fuse_module(module: nn.Module) -> tuple[nn.Module, list[ConvBnPair]]:
    """A BN-fused deep copy of `module` (eval statistics) and the pairs folded; `module` is unchanged."""
    pairs = find_conv_bn_pairs(module)
    return fold_pairs(copy.deepcopy(module).eval(), pairs), pairs


def fuse_through(model: nn.Module, traced: nn.Module) -> tuple[nn.Module, list[ConvBnPair]]:
    """A BN-fused copy of `model` (eval statistics), its pairs found by data flow through `traced`: a traceable view
    of `model` whose module names are `model`'s (a recipe's stage wrapper, where the whole model does not trace).
    Every BatchNorm2d of `model` must be folded; `model` is unchanged and the copy is marked `is_bn_fused`."""
    pairs = find_conv_bn_pairs(traced)
    fused = fold_pairs(copy.deepcopy(model).eval(), pairs)
    left = [n for n, m in fused.named_modules() if isinstance(m, _BNS)]
    if left:
        raise BadInputError(f"BN fusion left {len(left)} BatchNorm2d unfused (e.g. {left[0]}): no conv feeds it alone")
    fused.is_bn_fused = True
    return fused, pairs
