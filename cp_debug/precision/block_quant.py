"""NVFP4 and MXFP8 emulated in an FP32 ONNX graph: the `ort-*-nvfp4` / `ort-*-mxfp8` candidates (issue 86, item 2).

What ModelOpt's NVFP4 recipe (`NVFP4_DEFAULT_CFG`, max calibration) deploys: every GEMM's weight in FP4 (E2M1) with
two-level block scales, its input quantized on the fly by `trt::TRT_FP4DynamicQuantize` at a per-tensor scale from
the calibrated amax; MXFP8 likewise with E8M0 block scales and no calibration. No runtime here runs those formats, so
the same numbers are computed in float32 (`block_formats.py`, `block_graph.py`): each weight rounded through the
format and folded back to an FP32 constant (`<weight>_nvfp4`), each input read through a fake-quant subgraph of
standard ONNX ops (`<tensor>_nvfp4_dq`). The results are emulated — not run on hardware — and say so wherever
they appear (`EMULATED`).

Which layers: Conv (group 1), Gemm and MatMul whose weight is a float32 constant — the layers ModelOpt's recipe puts
in FP4 (its Linear and Conv quantizers). A MatMul of two activations (attention's QK^T, PV) stays float32, as the
recipe leaves the bmm quantizers off; so do depthwise / grouped convs (no GEMM to block). Blocks run along the
reduction axis: a GEMM input's last axis and its weight's K axis (ModelOpt's blocks along a Linear's last axis are
the same), a Conv's input channels (its implicit GEMM's K; ModelOpt's torch recipe would block a Conv weight along
its kernel width, which no block-scaled kernel computes).

Names: as for FP8 (`precision/fp8.py`), a tensor T read through the fake quant is compared at its output, the value
its consumers read; `tensor_map` says where every tensor of the original graph is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from cp_debug.errors import BadInputError
from cp_debug.precision.block_formats import (FORMATS, NVFP4, BlockFormat, blocked, flush_share, mxfp8_qdq, nvfp4_qdq,
                                              tensor_scale)
from cp_debug.precision.int8 import QuantizedModel, check_calib_feeds

if TYPE_CHECKING:  # pragma: no cover
    import onnx

EMULATED = "emulated — not run on hardware"
METADATA_KEY = "cp_debug.emulated_precision"  # the emulated graph says its format: `precision/held.py` reads it
COMPUTE_OPS = ("Conv", "Gemm", "MatMul")
# a weight whose NVFP4 block scales flush this share of its nonzero blocks to zero is named in the precision report
FLUSH_NOTE = 0.01


def quantize_blocks(model: "onnx.ModelProto", fmt: str | BlockFormat, calib_feeds: Sequence[dict[str, np.ndarray]] = (),
                    *, exclude_nodes: Sequence[str] = ()) -> QuantizedModel:
    """`model` with its GEMMs' weights and inputs through `fmt` (module docstring), NVFP4's tensor scales
    calibrated by max over `calib_feeds`; `exclude_nodes` left in float32 (ModelOpt's `nodes_to_exclude`).
    `weights_flushed` (NVFP4): weight or activation → the share of its nonzero blocks whose E4M3 block scale
    underflows (an activation's over `calib_feeds`), where `FLUSH_NOTE` or more."""
    import onnx
    import onnx_graphsurgeon as gs

    from cp_debug.graph.model import cleanup, export_like
    from cp_debug.precision.fp8 import at_fp8_opset, calibrate_max
    from cp_debug.precision.held import file_precision

    fmt = FORMATS[fmt] if isinstance(fmt, str) else fmt
    feeds = list(calib_feeds or ())
    if fmt.calibrated and not feeds:
        raise BadInputError(f"{fmt.name.upper()} needs calibration inputs for its per-tensor scales: give at least "
                            "one feed (--calib FILE.npz)")
    if (held := file_precision(model)) in ("int8", "fp8", *FORMATS):
        raise BadInputError(f"the model is already quantized (it holds {held}): run it as it is (ort, not "
                            f"ort-*-{fmt.name}); cp_debug never quantizes a quantized graph again")
    if feeds:
        check_calib_feeds(model, feeds)
    model = at_fp8_opset(model)  # float8 QuantizeLinear (the E4M3 rounding) from opset 19
    original = [t for n in model.graph.node for t in n.output if t] + [i.name for i in model.graph.input]
    graph = gs.import_onnx(model)
    excluded = set(exclude_nodes)
    layers = [(node, *axes) for node in graph.nodes if node.name not in excluded and (axes := _axes(node)) is not None]
    activations = {node.inputs[0].name: axis for node, axis, _ in reversed(layers)}  # the first layer's axis
    blocks = BlockAmax(activations)
    amax = calibrate_max(model, list(activations), feeds, blocks.seen) if fmt.calibrated else {}
    tmap = {n: n for n in original}
    done: dict[tuple[str, int], object] = {}
    folded: dict[tuple[str, int], object] = {}
    flushed = {t: share for t, share in blocks.flushed(amax).items() if share >= FLUSH_NOTE}
    for node, x_axis, w_axis in layers:
        x, w = node.inputs[0], node.inputs[1]
        values = np.asarray(w.values, np.float32)
        k = values.shape[w_axis]
        if (x.name, x_axis) not in done:  # a tensor read along two axes (a Conv's and a GEMM's) is named by both
            first = all(n != x.name for n, _ in done)
            name = f"{x.name}_{fmt.name}_dq" + ("" if first else f"_axis{x_axis}")
            done[x.name, x_axis] = _fake_quant(graph, fmt, x, x_axis, k, amax.get(x.name), name)
            if first:
                tmap[x.name] = name
        if (w.name, w_axis) not in folded:
            deq, share = nvfp4_qdq(values, w_axis) if fmt is NVFP4 else (mxfp8_qdq(values, w_axis), 0.0)
            folded[w.name, w_axis] = gs.Constant(f"{w.name}_{fmt.name}", deq)
            if share >= FLUSH_NOTE:
                flushed[w.name] = share
        node.inputs[0], node.inputs[1] = done[x.name, x_axis], folded[w.name, w_axis]
    cleanup(graph).toposort()
    qmodel = export_like(graph, model)
    qmodel.ir_version = max(qmodel.ir_version, 9)  # float8 tensors need IR 9
    onnx.helper.set_model_props(qmodel, {**{p.key: p.value for p in qmodel.metadata_props}, METADATA_KEY: fmt.name})
    return QuantizedModel(qmodel, tmap, {t: float(a) for t, a in amax.items()}, "max" if fmt.calibrated else "none",
                          flushed)


class BlockAmax:
    """NVFP4's blocks of the calibrated activations (each along its layer's block axis), to count those whose E4M3
    block scale underflows at the tensor scale calibration sets: `seen` is `calibrate_max`'s callback."""

    def __init__(self, axes: dict[str, int]) -> None:
        self.axes, self.amax = axes, {t: [] for t in axes}

    def seen(self, name: str, magnitudes: np.ndarray) -> None:
        if magnitudes.ndim:
            b, _ = blocked(magnitudes, self.axes[name], NVFP4.block)
            self.amax[name].append(b.max(axis=-1).ravel())

    def flushed(self, amax: dict[str, float]) -> dict[str, float]:
        """tensor → the share of its nonzero blocks (over every feed) whose block scale rounds to 0 at `amax`."""
        out = {}
        for name, parts in self.amax.items():
            if parts and name in amax:
                _, share = flush_share(np.concatenate(parts), tensor_scale(amax[name]))
                out[name] = share
        return out


def _axes(node) -> tuple[int, int] | None:
    """(the input's block axis, the weight's block axis) of a layer this transform quantizes, else None."""
    import onnx_graphsurgeon as gs

    if node.op not in COMPUTE_OPS or len(node.inputs) < 2:
        return None
    x, w = node.inputs[0], node.inputs[1]
    if not isinstance(w, gs.Constant) or not isinstance(x, gs.Variable) or x.dtype not in (None, np.float32):
        return None
    values = np.asarray(w.values)
    if values.dtype != np.float32 or values.ndim < 2:
        return None
    if node.op == "Conv":
        return (1, 1) if int(node.attrs.get("group", 1)) == 1 else None
    if node.op == "Gemm":
        return None if node.attrs.get("transA", 0) else (-1, 1 if node.attrs.get("transB", 0) else 0)
    return -1, values.ndim - 2  # MatMul: x[..., K] @ w[..., K, N]


def _fake_quant(graph, fmt: BlockFormat, x, axis: int, k: int, amax: float | None, name: str):
    from cp_debug.precision.block_graph import mxfp8_fake_quant, nvfp4_fake_quant

    if fmt is NVFP4:
        return nvfp4_fake_quant(graph, x, axis, k, tensor_scale(amax or 0.0), name)
    return mxfp8_fake_quant(graph, x, axis, k, name)


def emulated_format(model: "onnx.ModelProto") -> str | None:
    """The format a graph written here emulates ("nvfp4", "mxfp8"), None for any other graph."""
    return next((p.value for p in model.metadata_props if p.key == METADATA_KEY), None)


def fake_quant_output(name: str) -> bool:
    """Whether a tensor of a graph written here is a fake quant's output (`<tensor>_nvfp4_dq[_axisN]`)."""
    import re

    return re.search(r"_(?:nvfp4|mxfp8)_dq(?:_axis-?\d)?$", name) is not None
