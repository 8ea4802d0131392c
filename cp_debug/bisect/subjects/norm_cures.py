"""A decoder file whose normalisations are another function than the reference's, tried as the reference's on the
decode (issue 116, s7).

ONNX Runtime GenAI's builder 0.18.0 writes OLMo's LayerNorm (mean removed, epsilon 1e-5) as
SimplifiedLayerNormalization (RMS, 1e-6), and gives Nemotron's and Phi-2's LayerNorms 1e-6 where their configs say
1e-5 (it reads `rms_norm_eps`, which they lack). Where the --onnx reference's norms are all of one kind and epsilon
(a plain export's LayerNormalization) and the candidate file's differ, the file's norms are rewritten to the
reference's (kind and epsilon; a LayerNorm's beta 0) and the decode run again: the verified answer to "is the flip
the norms'", said in the builder's terms where one exists (`rms_norm_eps` in the config.json it reads). A `--torch`
reference's norms are measured from its modules (`module_norms`, s9), the candidate file decoded against its tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from cp_debug.probes.graph_diff import MEAN_NORMS, RMS_NORMS

if TYPE_CHECKING:
    import onnx

    from cp_debug.bisect.subjects.decoder_feed import DecoderInputs
    from cp_debug.bisect.subjects.greedy import Decode

_AS_MEAN = {"SimplifiedLayerNormalization": ("LayerNormalization", ""),
            "SkipSimplifiedLayerNormalization": ("SkipLayerNormalization", "com.microsoft")}
_AS_RMS = {"LayerNormalization": ("SimplifiedLayerNormalization", ""),
           "SkipLayerNormalization": ("SkipSimplifiedLayerNormalization", "com.microsoft")}


@dataclass(frozen=True)
class NormCure:
    """The candidate's norms (`nodes`) rewritten as the reference's (`mean`: a LayerNorm, else an RMS norm, at `eps`),
    and whether the decode then gives the reference's tokens back."""

    nodes: tuple[str, ...]
    mean: bool
    eps: float
    cured: bool
    kind_differs: bool

    @property
    def curing(self) -> tuple[str, ...]:
        return self.nodes if self.cured else ()

    @property
    def whole_file(self) -> bool:
        """Every norm of the file as the reference's gives the tokens back (`generation.DecodeCure`)."""
        return self.cured

    def line(self) -> str:
        what = f"{'LayerNorm' if self.mean else 'RMSNorm'}, epsilon {self.eps:.3g}"
        if not self.cured:
            return f"its {len(self.nodes)} norms as the reference's ({what}) do not give the reference's tokens back"
        terms = ("no builder option writes them so (the builder writes this model type's norms as another op)"
                 if self.kind_differs else
                 f"in the builder's terms \"rms_norm_eps\": {self.eps:.3g} in the config.json it builds from (it "
                 "reads that key only)")
        return f"its {len(self.nodes)} norms as the reference's ({what}) give the reference's tokens back; {terms}"


def reference_norms(model: "onnx.ModelProto") -> tuple[bool, float] | None:
    """(removes the mean, epsilon) shared by every fused norm of `model`; None where it has none or several."""
    from cp_debug.probes.graph_diff import norm_kind

    kinds = {norm_kind(n) for n in model.graph.node if n.op_type in MEAN_NORMS | RMS_NORMS}
    return kinds.pop() if len(kinds) == 1 else None


def module_norms(module) -> tuple[bool, float] | None:
    """(removes the mean, epsilon) shared by every normalisation of the PyTorch `module` (a `--torch` reference: no
    graph to read them from), each measured by running it (`_measured`: transformers' OlmoLayerNorm holds its 1e-5
    in its forward, no attribute); None where one cannot be measured or they differ."""
    from cp_debug.probes.graph_diff import eps_key

    kinds = set()
    for m in module.modules():
        if "norm" not in type(m).__name__.lower() or any("norm" in type(c).__name__.lower() for c in m.children()):
            continue
        kind = _measured(m)
        if kind is None:
            return None
        kinds.add((kind[0], eps_key(kind[1])))
    return kinds.pop() if len(kinds) == 1 else None


def _measured(norm) -> tuple[bool, float] | None:
    """(removes the mean, epsilon) of one normalisation module over its last axis, from its outputs: a constant row
    comes out as its zero row's output where the mean is removed (a LayerNorm), as its weight where not (an RMS
    norm); x · v (v of mean 0, mean square 1) comes out as w·v·x/√(x² + ε) + b, so two scales give ε. None where the
    module takes no such row (its size unknown, another layout) or its weight is zero."""
    import torch

    shape = getattr(norm, "normalized_shape", None)
    w = getattr(norm, "weight", None)
    size = int(shape[-1]) if shape else int(w.shape[-1]) if isinstance(w, torch.Tensor) and w.ndim == 1 else None
    if size is None or size < 2:
        return None
    v = torch.tensor([1.0, -1.0] * (size // 2) + [0.0] * (size % 2)) * (size / (size - size % 2)) ** 0.5
    dtype = w.dtype if isinstance(w, torch.Tensor) and w.is_floating_point() else torch.float32

    def run(x):
        with torch.no_grad():
            return norm(x.to(dtype).reshape(1, 1, size)).double().reshape(-1)

    try:
        zero, one, big = run(torch.zeros(size)), run(torch.ones(size)), run(v)
        step = big - zero
        if not float(step.abs().max()) > 0:
            return None
        mean = bool(torch.allclose(one, zero, atol=1e-3 * float(step.abs().max())))
        for a in (1e-3, 1e-5, 1e-7):
            r = float(((run(a * v) - zero) * step).sum() / (step * step).sum())
            if 0.02 < r < 0.98:  # r = a·√(1 + ε) / √(a² + ε)
                return mean, a * a * (1 - r * r) / (r * r - a * a)
    except (RuntimeError, TypeError, ValueError):
        return None
    return None


def norm_cure(model: "onnx.ModelProto", dec: "DecoderInputs", ids: np.ndarray, ref: "Decode",
              theirs: tuple[bool, float]) -> NormCure | None:
    """The candidate `model`'s norms as the reference's (`theirs`: `reference_norms`), decoded against `ref`; None
    where they are the reference's already."""
    from cp_debug.bisect.subjects.greedy import first_flip, greedy
    from cp_debug.probes.graph_diff import norm_kind

    mean, eps = theirs
    ours = [n for n in model.graph.node if n.op_type in MEAN_NORMS | RMS_NORMS]
    differ = [n for n in ours if norm_kind(n) != theirs]
    if not ours or not differ:
        return None
    kind_differs = any((n.op_type in MEAN_NORMS) != mean for n in differ)
    copy = _rewritten(model, {n.name for n in differ}, mean, eps)
    got = greedy(copy, dec, ids, len(ref.tokens), against=ref.tokens)
    return NormCure(tuple(n.name for n in differ), mean, eps, first_flip(ref, got) is None, kind_differs)


def _rewritten(model: "onnx.ModelProto", names: set[str], mean: bool, eps: float) -> "onnx.ModelProto":
    """A copy of `model` with the norms `names` of the other kind made `mean` (a LayerNorm's beta: zeros of its
    gamma's shape) and every one of them at `eps`."""
    import onnx
    from onnx import numpy_helper

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    shapes = {i.name: tuple(i.dims) for i in copy.graph.initializer}
    zeros: dict[tuple, str] = {}
    for node in copy.graph.node:
        if node.name not in names:
            continue
        swap = (_AS_MEAN if mean else _AS_RMS).get(node.op_type)
        if swap is not None:
            skip = node.op_type.startswith("Skip")
            ins = list(node.input)
            gamma = ins[2 if skip else 1]
            if mean:
                shape = shapes.get(gamma, ())
                if shape not in zeros:
                    zeros[shape] = f"cp_debug_norm_beta_{len(zeros)}"
                    copy.graph.initializer.append(numpy_helper.from_array(np.zeros(shape, np.float32), zeros[shape]))
                ins = ins[:3] + [zeros[shape]] + ins[3:4] if skip else ins[:2] + [zeros[shape]]
            else:  # an RMS norm has no beta: a LayerNorm's dropped (its bias after it kept)
                ins = ins[:3] + ins[4:5] if skip else ins[:2]
            node.op_type, node.domain = swap
            del node.input[:]
            node.input.extend(ins)
        for a in node.attribute:
            if a.name == "epsilon":
                a.f = eps
        if not any(a.name == "epsilon" for a in node.attribute):
            node.attribute.append(onnx.helper.make_attribute("epsilon", eps))
    return copy
