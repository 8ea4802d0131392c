"""Why a normalisation makes NaN: its eps, read from the module and looked for in the graph.

A LayerNorm-like module divides by sqrt(var + eps). Where a row's variance is 0 (padding, a constant feature), eps
alone keeps the division finite, and two things take it away:
  * float16 cannot hold it: an eps below float16's smallest subnormal (2^-24 ≈ 5.96e-8; BERT's 1e-12) rounds to 0
    in the FP16 graph (pytorch#86580), and 0 / sqrt(0) is NaN;
  * the exporter dropped it: the dynamo exporter's optimizer takes a constant within 1e-8 of 0 for 0 and removes
    `Add(var, eps)`, so the FP32 graph divides 0 by 0 already.
Both are read from the data: the module's own eps attribute(s), and the scalar constants the nodes of its ONNX
scope read. No module, or no eps attribute: no finding (an ONNX file's constants alone are checked for the first).
"""

from __future__ import annotations

import math
import re


from cp_debug.bisect.run_state import RunState

FP16_SUBNORMAL_MIN = 2.0 ** -24  # 5.96e-8: the smallest positive float16
FP16_NORMAL_MIN = 2.0 ** -14  # 6.1e-5
OPTIMIZER_ZERO = 1e-8  # onnxscript's pattern constants match 0 within this (abs_tol): an Add of a smaller eps goes
_EPS_NAME = re.compile(r"(^|_)(eps|epsilon)$|variance_epsilon|norm_eps")
_CALL = re.compile(r"(\[\d+\]|#\d+)+$")


def eps_reason(run: RunState, i: int, probe: str, precision: str) -> str | None:
    """The eps finding for probe `probe` of stage i whose candidate makes NaN (0 / 0) where the reference is finite,
    or None."""
    st = run.subject.stages[i]
    model = st.onnx_model
    if model is None:
        return None
    module_name = _CALL.sub("", probe)
    eps = _module_eps(st.module, module_name) if st.module is not None else {}
    scope_constants = _scope_constants(model, st.module, module_name)
    for where, value in eps.items():
        if not 0 < value < FP16_NORMAL_MIN:
            continue
        if value <= OPTIMIZER_ZERO and scope_constants is not None and not any(
                math.isclose(c, value, rel_tol=1e-3) for c in scope_constants):
            return (f"export fault: {where} = {value:g} appears in no node of its exported graph — the exporter "
                    "dropped Add(var, eps) (the dynamo exporter's optimizer takes a constant within 1e-8 of 0 for "
                    "0), so where a row's variance is 0 the graph divides 0 by 0 even in FP32 (the TorchScript "
                    "exporter keeps it; an eps ≥ 1e-8 survives)")
        if precision == "fp16" and value < FP16_SUBNORMAL_MIN:
            return (f"eps underflow: {where} = {value:g} is below float16's smallest subnormal "
                    f"({FP16_SUBNORMAL_MIN:.3g}) and rounds to 0 in the FP16 graph, so where a row's variance is 0 "
                    f"the normalisation divides 0 by 0 (pytorch#86580; an eps ≥ {FP16_NORMAL_MIN:.2g} is a normal "
                    "float16)")
    if not st.has_module and precision == "fp16" and scope_constants:
        tiny = sorted(c for c in scope_constants if 0 < abs(c) < FP16_SUBNORMAL_MIN)
        if tiny:
            return (f"eps underflow: a constant {tiny[0]:g} in this segment's nodes is below float16's smallest "
                    f"subnormal ({FP16_SUBNORMAL_MIN:.3g}) and rounds to 0 in the FP16 graph; where it guards a "
                    "division (var + eps) the result is 0 / 0")
    return None


def _module_eps(root, name: str) -> dict[str, float]:
    """`module.attr -> value` for the eps-like float attributes of module `name` and its descendants."""
    try:
        module = root.get_submodule(name) if name else root
    except AttributeError:
        return {}
    out = {}
    for sub_name, sub in module.named_modules():
        if any(c.__name__ == "_BatchNorm" for c in type(sub).__mro__):
            continue  # running statistics: its eps is folded into constants (or the Conv) at export, never an Add
        for attr, value in vars(sub).items():
            if _EPS_NAME.search(attr) and isinstance(value, float):
                out[f"{'.'.join(filter(None, [name, sub_name]))}.{attr}"] = value
    return out


def _scope_constants(model, root, name: str) -> list[float] | None:
    """The scalar float constants (initializers, Constant nodes) read by the nodes of module `name`'s ONNX scope;
    None where the graph names no node of that scope (then nothing can be said of what it lacks)."""
    from cp_debug.precision.layernorm import scalar_constants
    from cp_debug.probes.naming import node_scopes

    names = {q for q, _ in root.named_modules()} if root is not None else set()
    chains = node_scopes(model, names)
    inside = [n for n, chain in zip(model.graph.node, chains) if not name or name in chain]
    if name and not inside:
        return None
    scalars = scalar_constants(model)
    scalars.update({n.output[0]: float(a.f) for n in model.graph.node if n.op_type == "Constant" and n.output
                    for a in n.attribute if a.name == "value_float"})
    return [scalars[t] for n in inside for t in n.input if t in scalars]
