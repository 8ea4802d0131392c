"""Graph preparation shared by the ONNX Runtime and TensorRT runners (after Polygraphy's ONNX loaders).

A runner does not edit its graph: it calls a `PrepareGraph` loader (building one does nothing), which loads the
ONNX model, applies the precision transform (FP16 conversion, INT8 Q/DQ insertion, or a given Q/DQ graph as it is)
and exposes the probe tensors as outputs. The `PreparedGraph` it gives says which tensor holds each requested name
(`out_map`) and which requested probes the transformed graph lacks (`missing`: reported, never guessed), the same
way for every backend that runs ONNX.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from cp_debug.errors import BadInputError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import onnx

    from cp_debug.precision.int8 import QuantizedModel

TRANSFORMS = ("none", "fp16", "int8_qdq", "fp8_qdq", "nvfp4_emulated", "mxfp8_emulated", "qdq_model")
# a spec's precision → the transform that writes it (a given Q/DQ model, `qdq_model`, is the runner's own choice)
PRECISION_TRANSFORMS = {"int8": "int8_qdq", "fp8": "fp8_qdq", "fp16": "fp16", "nvfp4": "nvfp4_emulated",
                        "mxfp8": "mxfp8_emulated"}
_QUANTIZED = ("int8_qdq", "fp8_qdq", "nvfp4_emulated", "mxfp8_emulated")


@dataclass(frozen=True)
class PrecisionTransform:
    """The precision transform applied to a graph before a backend ran it: `kind` and the facts of that kind (None
    where they do not apply). `to_json()` is the runner settings' "precision_transform"."""

    kind: str = "none"  # none | fp16 | int8_qdq / fp8_qdq / *_emulated (quantized here) | qdq_model (file as given)
    # qdq_model
    quantize_nodes: int | None = None
    dequantize_nodes: int | None = None
    # int8_qdq (symmetric, per channel) / fp8_qdq (E4M3, per tensor, max calibration: ModelOpt's)
    format: str | None = None  # fp8_qdq: the float8 type of its Q/DQ (float8e4m3fn)
    weights_flushed: dict | None = None  # fp8_qdq: weight → share of its nonzero values flushed to zero (≥ 1%)
    # nvfp4_emulated / mxfp8_emulated: `precision.block_quant.EMULATED` (no runtime ran the format), the block length,
    # and (NVFP4) weight or activation → share of its nonzero blocks whose E4M3 block scale underflows, flushing them
    # (≥ 1%; an activation's over the calibration feeds)
    emulated: str | None = None
    block_size: int | None = None
    blocks_flushed: dict | None = None
    method: str | None = None
    symmetric: bool | None = None
    per_channel: bool | None = None
    calibration_feeds: int | None = None
    quantized_tensors: int | None = None
    excluded_nodes: tuple[str, ...] | None = None
    clips_ort_drops: dict | None = None  # int8_qdq: Clip → its quantizer's low bound, where ORT drops it wrongly
    from_float16: bool | None = None  # int8_qdq of a float16 file: its float32 twin quantized (`int8.quantize_int8`)
    # fp16: the user's keep list, then `precision.fp16.conversion_summary`'s fields
    keep_fp32_nodes: tuple[str, ...] | None = None
    nodes: int | None = None
    fp32_nodes_user: int | None = None
    fp32_nodes_required: int | None = None
    casts_inserted: int | None = None
    constants_overflowing_fp16: tuple[str, ...] | None = None
    constant_values_flushed_to_zero: int | None = None
    untyped_tensors: int | None = None
    segments: int | None = None  # set when merged over the segments of one graph
    # CPU runs of a graph holding float16 tensors: `precision.half_storage.HalfStorage.to_json()` (None: native)
    half_storage: dict | None = None

    @classmethod
    def fp16(cls, keep_fp32_nodes: Sequence[str], summary: Mapping[str, Any] | None) -> PrecisionTransform:
        """An FP16 conversion: the nodes kept by the user and the converter's summary (see `conversion_summary`)."""
        facts = {k: tuple(v) if isinstance(v, list) else v for k, v in (summary or {}).items()}
        return cls("fp16", keep_fp32_nodes=tuple(keep_fp32_nodes), **facts)

    def to_json(self) -> dict:
        return {f.name: list(v) if isinstance(v, tuple) else v
                for f in fields(self) if (v := getattr(self, f.name)) is not None}


@dataclass(frozen=True, eq=False)
class PreparedGraph:
    """A graph ready for a backend: what `PrepareGraph` gives.

    model: transformed, the probe tensors exposed as outputs. out_map: each requested name (the graph's outputs
    first, then the probes found) → the tensor of `model` that holds it (INT8: the quantizer's renaming).
    missing: requested probes the transformed graph lacks. plain (INT8): `model` before the probes were exposed,
    to measure what exposing them changes. quantized: the quantizer's result where it ran here.
    """

    model: "onnx.ModelProto"
    graph_outputs: tuple[str, ...]
    out_map: Mapping[str, str]
    missing: tuple[str, ...] = ()
    transform: PrecisionTransform = field(default_factory=PrecisionTransform)
    plain: "onnx.ModelProto | None" = None
    quantized: "QuantizedModel | None" = None


@dataclass(frozen=True, eq=False)
class PrepareGraph:
    """A loader: `PrepareGraph(...)()` loads `source` and prepares it for `label` (the spec, for messages).

    transform: none | fp16 | int8_qdq / fp8_qdq (quantized here on `calib_feeds`) | qdq_model (`source` is a Q/DQ graph,
        run as it is: probes it lacks are missing). keep_io_types (fp16): float32 at the graph's edges; False for
        the lockstep's float16 segments. check: run the ONNX checker on a ModelProto given directly.
    expose: add the probe tensors to the graph's outputs; False where the backend reads them otherwise (TensorRT's
        debug tensors): `out_map` and `missing` are the same either way, the graph is left as deployed.
    """

    source: "onnx.ModelProto | str | Path"
    label: str
    transform: str = "none"
    extra_outputs: tuple[str, ...] = ()
    calib_feeds: "Sequence[dict[str, np.ndarray]] | None" = None
    keep_fp32_nodes: tuple[str, ...] = ()
    exclude_int8_nodes: tuple[str, ...] = ()
    calib_method: str = "minmax"
    keep_io_types: bool = True
    check: bool = True
    expose: bool = True

    def __post_init__(self) -> None:
        if self.transform not in TRANSFORMS:
            raise ValueError(f"unknown graph transform {self.transform!r}: one of {', '.join(TRANSFORMS)}")

    def __call__(self) -> PreparedGraph:
        from cp_debug.graph.model import load_onnx

        model = load_onnx(self.source, check=self.check)
        graph_outputs = tuple(o.name for o in model.graph.output)
        extras = [n for n in dict.fromkeys(self.extra_outputs) if n not in graph_outputs]
        if self.transform == "qdq_model":
            return self._qdq_model(model, graph_outputs, extras)
        from cp_debug.graph.model import check_tensor_names

        check_tensor_names(model, extras)
        if self.transform in _QUANTIZED:
            return self._quantized(model, graph_outputs, extras)
        return self._exposed(model, graph_outputs, extras)

    # -- one per transform -------------------------------------------------------------------------------
    def _qdq_model(self, model, graph_outputs: tuple[str, ...], extras: list[str]) -> PreparedGraph:
        from cp_debug.graph.model import expose_outputs

        present = {t for n in model.graph.node for t in n.output} | {i.name for i in model.graph.input}
        missing = tuple(n for n in extras if n not in present)
        extras = [n for n in extras if n in present]
        transform = PrecisionTransform("qdq_model", quantize_nodes=_count_ops(model, "QuantizeLinear"),
                                       dequantize_nodes=_count_ops(model, "DequantizeLinear"))
        out_map = {n: n for n in graph_outputs + tuple(extras)}
        exposed = expose_outputs(model, extras) if extras and self.expose else model
        return PreparedGraph(exposed, graph_outputs, out_map, missing, transform, plain=model)

    def _quantized(self, model, graph_outputs: tuple[str, ...], extras: list[str]) -> PreparedGraph:
        from cp_debug.graph.model import expose_outputs

        fp8 = self.transform == "fp8_qdq"
        if self.transform.endswith("_emulated"):
            q, transform = self._emulated(model)
        elif not self.calib_feeds:
            raise BadInputError(f"{self.label} needs calibration inputs (calib_feeds / --calib FILE.npz) to "
                                f"compute {'FP8' if fp8 else 'INT8'} scales")
        elif fp8:
            from cp_debug.precision.fp8 import quantize_fp8

            q = quantize_fp8(model, self.calib_feeds, exclude_nodes=self.exclude_int8_nodes)
        else:
            from cp_debug.precision.int8_cache import quantize_int8_cached

            q = quantize_int8_cached(model, self.calib_feeds, exclude_nodes=self.exclude_int8_nodes,
                                     method=self.calib_method)
        if self.transform in ("int8_qdq", "fp8_qdq"):
            kind = {"excluded_nodes": tuple(self.exclude_int8_nodes)}
            if fp8:
                kind.update(format="float8e4m3fn", weights_flushed=q.weights_flushed)
            else:
                from cp_debug.precision.int8 import clips_ort_drops

                from cp_debug.precision.half_storage import holds_half_constants

                kind["clips_ort_drops"] = clips_ort_drops(q.model) or None
                kind["from_float16"] = holds_half_constants(model) or None
            transform = PrecisionTransform(self.transform, method=q.method, symmetric=True, per_channel=not fp8,
                                           calibration_feeds=len(self.calib_feeds),
                                           quantized_tensors=len(q.activation_amax), **kind)
        out_map = {n: n for n in graph_outputs}  # graph outputs are what a user reads: not re-quantized
        missing = []
        for n in extras:
            if n in q.tensor_map:
                out_map[n] = q.tensor_map[n]
            else:
                missing.append(n)
        probe_names = [out_map[n] for n in extras if n in out_map]
        exposed = expose_outputs(q.model, probe_names) if probe_names and self.expose else q.model
        return PreparedGraph(exposed, graph_outputs, out_map, tuple(missing), transform, plain=q.model, quantized=q)

    def _emulated(self, model) -> tuple:
        """NVFP4 / MXFP8 written in float32 ONNX (`precision/block_quant.py`): the quantized model and its facts."""
        from cp_debug.precision.block_formats import FORMATS
        from cp_debug.precision.block_quant import EMULATED, quantize_blocks

        fmt = FORMATS[self.transform.removesuffix("_emulated")]
        if fmt.calibrated and not self.calib_feeds:
            raise BadInputError(f"{self.label} needs calibration inputs (calib_feeds / --calib FILE.npz) to compute "
                                f"{fmt.name.upper()}'s per-tensor scales")
        q = quantize_blocks(model, fmt, self.calib_feeds or (), exclude_nodes=self.exclude_int8_nodes)
        calibrated = {"calibration_feeds": len(self.calib_feeds), "quantized_tensors": len(q.activation_amax),
                      "blocks_flushed": q.weights_flushed} if fmt.calibrated else {}
        return q, PrecisionTransform(self.transform, format=fmt.describe, method=q.method, emulated=EMULATED,
                                     block_size=fmt.block, excluded_nodes=tuple(self.exclude_int8_nodes),
                                     **calibrated)

    def _exposed(self, model, graph_outputs: tuple[str, ...], extras: list[str]) -> PreparedGraph:
        """none / fp16: the probes exposed first, then the whole graph converted (their Casts included)."""
        from cp_debug.graph.model import expose_outputs

        model = expose_outputs(model, extras) if extras and self.expose else model
        out_map = {n: n for n in graph_outputs + tuple(extras)}
        transform = PrecisionTransform()
        if self.transform == "fp16" and not self.keep_fp32_nodes and _holds_half(model):
            pass  # a file that holds float16 itself (a user's FP16 deployment) runs as it is, never converted again
        elif self.transform == "fp16":
            from cp_debug.precision.fp16 import conversion_summary
            from cp_debug.precision.fp16_cache import convert_to_fp16_cached

            model = convert_to_fp16_cached(model, keep_fp32_nodes=self.keep_fp32_nodes,
                                           keep_io_types=self.keep_io_types)
            transform = PrecisionTransform.fp16(self.keep_fp32_nodes, conversion_summary(model))
        return PreparedGraph(model, graph_outputs, out_map, (), transform)


def vanished_note(missing: Sequence[str]) -> str | None:
    """The precision report's note on probes an INT8 graph lost, the same for every runner (None: none lost)."""
    if not missing:
        return None
    return f"{len(missing)} probe tensor(s) vanished in quantization: {', '.join(missing[:3])}"


def _count_ops(model, op_type: str) -> int:
    return sum(1 for n in model.graph.node if n.op_type == op_type)


def _holds_half(model) -> bool:
    from cp_debug.precision.half_storage import holds_half_constants

    return holds_half_constants(model)
