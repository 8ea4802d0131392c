"""fix's judge of INT8 graph outputs as bisect judges them: by the budget their input's rounding carries, where they
are beyond their own only by what they were fed (`compare.int8_carry.carry_judgement`, the one rule; issue 84, item 4).

Each graph output's source is the data input of the nearest quantized node upstream of it (a classifier's Gemm reads
the pooled features): the candidate's run exposes it, its error is judged by its own budget (at its calibrated
range), and the output's own segment — cut from the source to the output, quantized and calibrated on the
reference's values there, as bisect's local errors are — is run alone only where everything else holds. keep-fp32
searches FP16 only: its outputs are judged by their own budget, the same `cure_judge.passes`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from cp_debug.compare.diff import TensorDiff, default_tolerance
from cp_debug.compare.noise import Judgement, judge


def output_sources(model) -> dict[str, str]:
    """Each graph output → the data input of the nearest quantized node (`precision.int8.DEFAULT_OP_TYPES`) upstream of
    it, walking back through the ops between (a Flatten, an Add); outputs with none are left out."""
    from cp_debug.precision.int8 import DEFAULT_OP_TYPES

    producer = {t: n for n in model.graph.node for t in n.output if t}
    inits = {i.name for i in model.graph.initializer}
    out = {}
    for o in model.graph.output:
        queue, seen = [o.name], set()
        while queue:
            t = queue.pop(0)
            node = producer.get(t)
            if node is None or t in seen:
                continue
            seen.add(t)
            if node.op_type in DEFAULT_OP_TYPES:
                if node.input and node.input[0] not in inits:
                    out[o.name] = node.input[0]
                break
            queue += [x for x in node.input if x and x not in inits]
    return out


@dataclass(frozen=True)
class CarriedOutputs:
    """The FP32 graph (`model`), its outputs' sources (empty: not INT8, every output judged by its own budget) and the
    nodes the judged run leaves out of INT8 (its own segment leaves them out too)."""

    model: Any
    sources: Mapping[str, str] = field(default_factory=dict)
    exclude: tuple[str, ...] = ()

    @classmethod
    def of(cls, model, precision: str, exclude: Sequence[str] = ()) -> "CarriedOutputs":
        return cls(model, output_sources(model) if precision == "int8" else {}, tuple(exclude))

    @property
    def tensors(self) -> list[str]:
        """The sources, each once: what the reference's and the candidate's runs expose besides the outputs."""
        return list(dict.fromkeys(self.sources.values()))

    def exposed(self, int8_model=None) -> dict[str, str]:
        """Each source → the tensor a run exposes for it: itself, or in a written Q/DQ file (`int8_model`) the
        DequantizeLinear output its quantized reader reads (what a quantized run's own map gives)."""
        if int8_model is None or not self.sources:
            return {t: t for t in self.tensors}
        from cp_debug.precision.int8 import read_qdq

        tmap, _ = read_qdq(int8_model, self.tensors)
        return {t: tmap[t] for t in self.tensors if t in tmap}

    def amax(self, runner, int8_model=None) -> dict[str, float]:
        """The sources' calibrated ranges: the runner's quantizer's, or those a written Q/DQ file holds."""
        if int8_model is None:
            return runner.quant_amax() if hasattr(runner, "quant_amax") else {}
        from cp_debug.precision.int8 import read_qdq

        return read_qdq(int8_model, self.tensors)[1]

    def judgements(self, diffs: Sequence[TensorDiff], ref: Mapping, got: Mapping,
                   amax: Mapping[str, float]) -> dict[str, Judgement]:
        """Each output's judgement (`carry_judgement` where it applies, else by its own budget). `ref`: the sample's
        feed and the reference's values (outputs and sources); `got`: the candidate's; `amax`: its calibrated ranges."""
        from cp_debug.compare.int8_carry import carry_judgement

        out = {}
        for d in diffs:
            j = judge(d, "int8")
            src = self.sources.get(d.name)
            if src is not None and src in ref and src in got:
                sd = TensorDiff.from_arrays(src, ref[src], got[src], default_tolerance("int8"))
                j = carry_judgement(j, d, src, sd, judge(sd, "int8", amax.get(src)),
                                    lambda name=d.name, s=src: self._local_within(name, s, ref), "int8")
            out[d.name] = j
        return out

    def _local_within(self, output: str, source: str, ref: Mapping) -> bool:
        """The output's own segment, from the reference's `source` on, quantized as the candidate quantizes it:
        within INT8's budget?"""
        import numpy as np

        from cp_debug.backends import make_runner
        from cp_debug.backends.spec import BackendSpec
        from cp_debug.graph.plan import cut_segment, segment_model, tensor_types

        cut = cut_segment(self.model, [output], {source})
        if any(t not in ref for t in cut.inputs):
            return False
        feed = {t: np.asarray(ref[t]) for t in cut.inputs}
        seg = segment_model(self.model, cut, feed, tensor_types(self.model), None,
                            {output: np.shape(ref[output])})
        names = {n.name for n in seg.graph.node}
        with make_runner(BackendSpec.parse("ort-cpu-int8"), onnx_model=seg, calib_feeds=[feed],
                         exclude_int8_nodes=[n for n in self.exclude if n in names]) as r:
            got = r.infer(feed)[output]
        return not judge(TensorDiff.from_arrays(output, ref[output], got, default_tolerance("int8")), "int8").beyond


def excluded_in(fixed, model) -> tuple[str, ...]:
    """The quantizable nodes of `model` a written Q/DQ file (`fixed`) leaves in float: their data input is not a
    DequantizeLinear's output there."""
    from cp_debug.precision.int8 import DEFAULT_OP_TYPES

    producer = {t: n for n in fixed.graph.node for t in n.output if t}
    names = {n.name for n in model.graph.node if n.op_type in DEFAULT_OP_TYPES}
    return tuple(n.name for n in fixed.graph.node if n.name in names and n.input
                 and getattr(producer.get(n.input[0]), "op_type", None) != "DequantizeLinear")
