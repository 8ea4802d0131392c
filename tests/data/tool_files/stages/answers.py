"""cases.json: every case make.py ran, what the project's ONNX Runtime makes of its file, and its right answer.

The right answer is derived from measurements, by the rules of `expected` (README.md states them): plain ORT
(1.32, CPU) runs the file on the sample inputs and its output is compared with the PyTorch FP32 module of the
same variant; the plants' own layer facts (FP16 range, per-tensor INT8 and FP8 E4M3 of the planted weight) are
measured in PyTorch. Runs in the project's environment, after the tools' stages.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import facts
import numpy as np
import onnx

ROOT = facts.ROOT
TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2, "int8": 5e-2, "fp8": 5e-2}  # within_precision at or under this
DIVERGED_TIMES = 10  # degraded up to this many times the tolerance, diverged past it (or any inf/NaN)
MAIN_DIST = {"optimum-export": "optimum-onnx", "optimum-ortquantizer-dynamic": "optimum-onnx",
             "torch-export": "torch", "torch-dynamo": "torch", "ort-quantize-dynamic": "onnxruntime",
             "ort-quantize-static-qdq": "onnxruntime", "ort-quantize-static-qoperator": "onnxruntime",
             "modelopt-int8": "nvidia-modelopt", "modelopt-fp8": "nvidia-modelopt", "polygraphy-fp16": "polygraphy",
             "onnxconverter-fp16": "onnxconverter-common", "onnxconverter-fp16-keepio": "onnxconverter-common",
             "onnxslim": "onnxslim", "onnxsim": "onnxsim"}
FP32_SOURCE = {"bert": "optimum-export/model.onnx", "cnn": "torch-export/model.onnx"}


def precision(tool: str) -> str:
    """The precision the tool's file is meant to run in."""
    if "fp16" in tool:
        return "fp16"
    if "fp8" in tool:
        return "fp8"
    if "quant" in tool or "int8" in tool:
        return "int8"
    return "fp32"


PLANT_MODULE = {"bert": "bert.encoder.layer.0.output.dense", "cnn": "block2.conv1"}


def plant_module(model: str) -> str:
    """The planted layer as a module path of the --torch module (the CNN's conv1, with its bn1 folded in every
    export)."""
    return PLANT_MODULE[model]


def plant_nodes(model_proto, model: str) -> list[str]:
    """The file's nodes made from the planted layer (their names carry its path, '/' or '.' separated)."""
    path = plant_module(model).removeprefix("bert.")
    keys = {path.replace(".", "/").replace("layer/0", "layer.0"), path, path.replace(".", "_")}
    return [n.name for n in model_proto.graph.node if any(k in n.name for k in keys)]


def _layer(module, model: str):
    """(weight, bias, module whose output is the layer's, module whose input is its) of the planted layer: the
    CNN's conv1 with bn1 folded in, as every export writes it."""
    if model == "bert":
        d = module.get_submodule(PLANT_MODULE["bert"])
        return d.weight, d.bias, d, d
    blk = module.block2
    f = blk.bn1.weight / (blk.bn1.running_var + blk.bn1.eps).sqrt()
    return blk.conv1.weight * f[:, None, None, None], blk.bn1.bias - blk.bn1.running_mean * f, blk.bn1, blk.conv1


def layer_facts() -> dict:
    """The plants measured in PyTorch on the sample inputs: the planted layer's output range against FP16's 65504,
    and the layer's own error with its weight in per-tensor symmetric INT8 and in per-tensor FP8 E4M3 (scale
    amax/448), whole-tensor relative RMS and the median over output channels of each channel's relative RMS."""
    import torch
    sys.path.insert(0, str(ROOT))
    import models
    out = {}
    for model, variants in (("bert", ("healthy", "planted")), ("cnn", ("healthy", "planted", "outlier"))):
        for variant in variants:
            module, inputs = models.build(model, variant)
            cap = {}
            with torch.no_grad():
                w, b, out_mod, in_mod = _layer(module, model)
                out_mod.register_forward_hook(lambda m, i, o: cap.update(o=o))
                in_mod.register_forward_hook(lambda m, i, o: cap.update(i=i[0]))
                y = module(*inputs)
                o = cap["o"]
                row = {"output_finite_fp32": bool(torch.isfinite(y).all()), "layer": PLANT_MODULE[model],
                       "layer_max_abs": float(o.abs().max()), "over_fp16_max": int((o.abs() > 65504).sum()),
                       "weight_max_abs": float(w.abs().max())}
                s8 = w.abs().max() / 127
                s448 = w.abs().max() / 448
                for name, wq in (("int8", (w / s8).round().clamp(-127, 127) * s8),
                                 ("fp8", (w / s448).to(torch.float8_e4m3fn).to(torch.float32) * s448)):
                    if model == "bert":
                        oq, dims = torch.nn.functional.linear(cap["i"], wq, b), (0, 1)
                    else:
                        oq = torch.nn.functional.conv2d(cap["i"], wq, b, 2, 1)
                        dims = (0, 2, 3)
                    d = oq - o
                    per = d.pow(2).mean(dims).sqrt() / o.pow(2).mean(dims).sqrt()
                    row[f"{name}_weight_rel_rms"] = float(d.norm() / o.norm())
                    row[f"{name}_weight_median_channel_rel_rms"] = float(per.median())
                yh = module.half()(*[t.half() if t.is_floating_point() else t for t in inputs])
                row["torch_fp16_output_finite"] = bool(torch.isfinite(yh).all())
            out[f"{model}/{variant}"] = row
    return out


def ort_facts(path: Path, npz: Path, ref: np.ndarray, healthy_probe: set[str]) -> dict:
    """Plain ORT with graph optimisation off and at its default: accepts, runs, first error line, the output's
    comparison with the FP32 reference; and, probed (every node output exposed), the non-finite node outputs
    that the healthy file of the same tool does not have too (`healthy_probe`: those it has)."""
    res = {}
    for key, opt in (("optimization_off", False), ("optimization_default", True)):
        r = facts.ort_run(path, npz, opt)
        row = {"accepts": r["accepts"], "runs": r.get("runs", False), "error": r["error"]}
        if r["output"] is not None:
            row.update(facts.compare(r["output"], ref))
        res[key] = row
    if res["optimization_off"]["runs"]:
        found = facts.non_finite_outputs(path, npz)
        res["probe_non_finite"] = len(found)
        new = [f for f in found if f["output"] not in healthy_probe]
        res["probe_first_non_finite"] = (new or found or [None])[0]
        res["probe_first_non_finite_not_in_healthy"] = new[0] if new else None
        res["_probe_outputs"] = {f["output"] for f in found}
    return res


def refused_node(error: str) -> str | None:
    """The node ORT names in its refusal ('... of node (NAME) ...'), if it names one."""
    m = re.search(r"of node \(([^)]*)\)", error or "")
    return m.group(1) if m else None


def expected(case: dict, proto, layer: dict) -> dict:
    """The right answer from the measurements (README.md's rules)."""
    model, variant, prec = case["model"], case["variant"], case["precision"]
    ort = case["ort"]["optimization_off"]
    planted = plant_module(model) if variant != "healthy" else None
    nodes = plant_nodes(proto, model)
    clamped = [w for w in case["warnings"] if "truncated to" in w and "10000.0" in w and "e+38" not in w]
    if not ort["accepts"] or not ort["runs"]:
        return {"outcome": "refused", "reason": "ort-refuses-file",
                "root_cause": {"module": None, "node": refused_node(ort["error"])},
                "why": f"plain ORT refuses the file: {ort['error']}"}
    new = case["ort"].get("probe_first_non_finite_not_in_healthy")
    holds16 = prec == "fp16" or "float16" in case["file_float_types"]
    if not ort["finite"]:
        reason = "fp16-overflow" if holds16 else f"{prec}-overflow"
        node = next((n for n in proto.graph.node if new and n.name == new["node"]), None)
        if node is not None and set(node.input) & set(case["file_non_finite_initializers"]):
            reason = f"{prec}-scale-inf"  # the tool wrote an inf scale: the file is broken before it runs
        return {"outcome": "diverged", "reason": reason,
                "root_cause": {"module": planted, "node": (new or {}).get("node"), "probe": new, "nodes": nodes},
                "why": f"{ort['non_finite_count']} non-finite outputs; probed, the first inf/NaN the healthy "
                       f"file has not comes out of {(new or {}).get('op')} {(new or {}).get('node')!r}"}
    rel, tol = ort["rel_rms"], TOLERANCE[prec]
    outcome = ("within_precision" if rel <= tol else "degraded" if rel <= DIVERGED_TIMES * tol else "diverged")
    why = f"output relative RMS error {rel:.3g} against the FP32 module (tolerance {tol:g} for {prec})"
    root = {"module": planted, "node": nodes[0] if nodes else None, "nodes": nodes} if planted else None
    if root and model == "cnn":
        root["also"] = ("block2.conv2 (/block2/conv2/Conv): its weights reading the planted channel are 1/scale "
                        "of the rest; per-tensor INT8 zeroes them, and a whole-tensor error shows there first")
    if outcome == "within_precision":
        if planted and new and holds16:
            return {"outcome": outcome, "reason": "fp16-overflow-hidden-by-ort-cpu",
                    "root_cause": {"module": planted, "node": new["node"], "probe": new, "nodes": nodes},
                    "fp16_arithmetic": {"outcome": "diverged", "reason": "fp16-overflow",
                                        "torch_fp16_output_finite": layer["torch_fp16_output_finite"]},
                    "why": why + f"; the layer's FP32 output passes 65504 ({layer['over_fp16_max']} values, max "
                                 f"{layer['layer_max_abs']:.0f}): probed, {new['op']} {new['node']!r} gives inf, "
                                 "but a plain ORT CPU run computes that FP16 chain in FP32 and never rounds it"}
        if planted and prec != "fp32" and model == "bert":
            return {"outcome": outcome, "reason": f"{prec}-outlier-masked", "root_cause": root,
                    "why": why + f"; the planted layer's own error is large (median channel "
                                 f"{layer[f'{prec}_weight_median_channel_rel_rms']:.2f} with per-tensor {prec} "
                                 "weights) but its huge channel dominates the LayerNorm after it in FP32 too, so "
                                 "the output hides it"}
        if planted and prec != "fp32":
            return {"outcome": outcome, "reason": f"{prec}-tolerates-outlier", "root_cause": None,
                    "why": why + f"; per-tensor {prec} of the planted layer keeps its other channels (median "
                                 f"channel error {layer[f'{prec}_weight_median_channel_rel_rms']:.3f})"}
        probe = case["ort"].get("probe_first_non_finite")
        if probe and holds16:
            return {"outcome": outcome, "reason": "mask-harmless", "root_cause": None,
                    "why": why + f"; probed, {probe['op']} {probe['node']!r} holds -inf/inf (the additive "
                                 "attention mask's -3.4e38 in FP16), and the softmax still masks with it"}
        return {"outcome": outcome, "reason": "none", "root_cause": None, "why": why}
    if clamped and planted:
        reason = "converter-clamped"
        why += f"; the converter clamped the planted weights: {clamped[0]}"
    else:
        reason = f"{prec}-outlier" if planted else f"{prec}-rounding"
    return {"outcome": outcome, "reason": reason, "root_cause": root, "why": why}


def write_cases(runs: dict, path: Path) -> None:
    """Measure every case of `runs` (make.py's record of the tools) and write cases.json."""
    sys.path.insert(0, str(ROOT))
    import models
    layers = layer_facts()
    refs: dict = {}
    probes: dict = {}  # (model, tool) → the healthy file's non-finite node outputs when probed
    cases = []
    for key in sorted(runs):
        run = runs[key]
        model, variant, tool = key.split("/")
        case = {"id": key, "model": model, "variant": variant, "tool": tool}
        if "skipped" in run:
            cases.append({**case, "skipped": run["skipped"]})
            continue
        build = f"build_{model}" + ("" if variant == "healthy" else f"_{variant}")
        case.update({"venv": run.get("venv"), "tool_dist": MAIN_DIST[tool],
                     "tool_version": run.get("versions", {}).get(MAIN_DIST[tool]), "versions": run.get("versions"),
                     "call": run.get("call"), "precision": precision(tool), "warnings": run.get("warnings", []),
                     "torch": f"tests/data/tool_files/models.py:{build}", "inputs": f"{model}_inputs.npz",
                     "source": None if tool in ("optimum-export", "torch-export", "torch-dynamo")
                     else f"{model}/{variant}/{FP32_SOURCE[model]}"})
        if tool in ("ort-quantize-static-qdq", "ort-quantize-static-qoperator", "modelopt-int8", "modelopt-fp8"):
            case["calib"] = f"{model}_calib.npz"
        if run.get("error"):
            cases.append({**case, "error": run["error"]})
            continue
        case["file"], case["files"] = run["file"], run["files"]
        case["bytes"] = sum((ROOT / f).stat().st_size for f in run["files"])
        proto = onnx.load(str(ROOT / run["file"]))
        case["file_inputs"] = facts.file_inputs(proto)
        case["file_float_types"] = facts.float_types(proto)
        case["file_non_finite_initializers"] = facts.non_finite_initializers(proto)
        case["opset"] = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=None)
        ref = refs.setdefault((model, variant), facts.reference(model, variant))
        healthy = probes.get((model, tool), set())
        case["ort"] = ort_facts(ROOT / run["file"], ROOT / case["inputs"], ref, healthy)
        if variant == "healthy":
            probes[(model, tool)] = case["ort"].get("_probe_outputs", set())
        case["ort"].pop("_probe_outputs", None)
        case["expected"] = expected(case, proto, layers[f"{model}/{variant}"])
        cases.append(case)
    doc = {"schema": "README.md", "plants": models.PLANTS, "layer_facts": layers, "tolerance": TOLERANCE,
           "diverged_times": DIVERGED_TIMES, "project_onnxruntime": __import__("onnxruntime").__version__,
           "cases": cases}
    path.write_text(json.dumps(doc, indent=1, default=str) + "\n")
