"""A fix written to `--out DIR`, whole or not at all (a sibling temp dir put in place at the end).

DIR holds the deployable pair under AWML's names (`pts_voxel_encoder.onnx`, `pts_backbone_neck_head.onnx`, so
`ort@DIR` loads it as any deployed pair), the FP32 pair it was judged against (`fp32.<name>`, for
`fix --check`), the exclusion list in the forms other tools take (`nodes_to_exclude.json`: ONNX node names per
file, for ModelOpt AutoCast and ONNX Runtime's quantizer; `skip_layers.txt`: torch module names, for AWML's
PTQ `--skip-layers`), `fix.json` (everything measured) and a README saying how to build the engines.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

from cp_debug.errors import BadInputError

SCHEMA = "cp_debug.fix/1"
FIX_JSON = "fix.json"
REFERENCE_PREFIX = "fp32."
EXCLUDE_JSON = "nodes_to_exclude.json"
SKIP_LAYERS = "skip_layers.txt"
README = "README.md"


def reference_name(file: str) -> str:
    return REFERENCE_PREFIX + file


def kept_fp32_violations(model, nodes: Sequence[str]) -> dict[str, list[str]]:
    """For each kept node, its float inputs/outputs that are not float32 in `model`'s graph (types from ONNX
    shape inference, not assumed): {node: ["tensor: dtype", ...]}; empty when every kept node computes in FP32.
    A kept node missing from the graph is reported too."""
    import onnx

    from cp_debug.graph.model import inferred_graph

    g = inferred_graph(model)  # the weights' values left out: any size
    types = {v.name: v.type.tensor_type.elem_type for v in list(g.value_info) + list(g.input) + list(g.output)}
    types.update({t.name: t.data_type for t in g.initializer})
    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16, onnx.TensorProto.DOUBLE}
    by_name = {n.name: n for n in g.node}
    out: dict[str, list[str]] = {}
    for name in nodes:
        node = by_name.get(name)
        if node is None:
            out[name] = ["not in the graph"]
            continue
        bad = [f"{t}: {onnx.TensorProto.DataType.Name(types[t])}" for t in list(node.input) + list(node.output)
               if t and types.get(t) in floats and types[t] != onnx.TensorProto.FLOAT]
        if bad:
            out[name] = bad
    return out


def write_fix(out: str | Path, *, fixed: Mapping, reference: Mapping, doc: dict,
              nodes_to_exclude: Mapping[str, Sequence[str]], skip_layers: Sequence[str],
              graph_files: Sequence[str] = ()) -> Path:
    """Write the fix DIR whole: `fixed` / `reference` are {AWML file name: ModelProto}; `doc` is fix.json
    without its `files` entry (sha256 of every file written, added here); `graph_files`: the recipe's deployment
    files, which the README names where `doc` names none."""

    from cp_debug.files import write_json
    from cp_debug.graph.onnx_files import save_onnx
    from cp_debug.quant.ptq_checkpoint import write_dir_atomically

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BadInputError(f"--out {out} is a file; give a directory")

    def write(tmp: Path) -> None:
        for file, model in fixed.items():
            save_onnx(model, tmp / file)  # past 2 GiB its weights beside it: FILE.data
        for file, model in reference.items():
            save_onnx(model, tmp / reference_name(file))
        write_json(tmp / EXCLUDE_JSON, {f: list(n) for f, n in nodes_to_exclude.items()})
        (tmp / SKIP_LAYERS).write_text(",".join(skip_layers) + "\n")
        (tmp / README).write_text(readme(doc, graph_files))
        files = {p.name: sha256(p) for p in sorted(tmp.iterdir())}
        write_json(tmp / FIX_JSON, {**doc, "files": files})

    write_dir_atomically(out, write)
    return out


def read_fix(path: str | Path) -> dict:
    """fix.json of a written fix DIR; BadInputError when DIR is not one."""
    p = Path(path)
    doc_path = p / FIX_JSON
    if not doc_path.is_file():
        raise BadInputError(f"{p} has no {FIX_JSON}: give a directory written by `cpdebug fix --out DIR`")
    try:
        doc = json.loads(doc_path.read_text())
    except ValueError as err:
        raise BadInputError(f"{doc_path} is not valid JSON ({err}); write the fix again") from None
    if doc.get("schema") != SCHEMA:
        raise BadInputError(f"{doc_path} has schema {doc.get('schema')!r}, not {SCHEMA!r}")
    return doc


def recorded_model_name(doc: dict) -> str:
    """The model fix.json `doc` was made from, as `get_preset` takes it: its ModelRecord's (a config file's path where
    one was given), else its `preset` (fixes written before the record was kept)."""
    from cp_debug.lidar.record import ModelRecord

    return ModelRecord.from_json(doc["model_record"]).model_name if doc.get("model_record") else doc["preset"]


def sha256(path: Path) -> str:
    from cp_debug.files import sha256_file

    return sha256_file(path)


def readme(doc: dict, graph_files: Sequence[str] = ()) -> str:
    """How to build the engines from DIR, and what was checked (`graph_files`: the recipe's deployment files, named
    where `doc` names none)."""

    kind = doc["kind"]
    v = doc.get("verification") or {}
    fixed, plain, ref = v.get("fixed") or {}, v.get("plain") or {}, v.get("reference") or {}
    s = doc["set"]
    n = len(s["modules"]) if kind == "int8" else sum(len(x) for x in s["onnx_nodes"].values())
    what = (f"{n} node(s) kept in FP32 through explicit Casts" if kind == "fp16"
            else f"{n} layer(s) left out of INT8 (no Q/DQ around them)")
    lines = [
        f"# cp_debug fix: {doc['preset']}, {kind.upper()} ({doc['backends']['candidate']})", "",
        f"Written by cp_debug {doc.get('cp_debug_version')} on {doc.get('written_at')}. The "
        f"{'graph' if len(doc.get('deployed_files') or ()) == 1 else 'pair'} in this folder is "
        f"{'FP16' if kind == 'fp16' else 'INT8 Q/DQ'} with {what}; the set was searched to meet "
        f"**{doc['target_text']}** on {(doc.get('search_frames') or {}).get('n')} frame(s) and verified in ONNX "
        f"Runtime ({v.get('device')}) on {v.get('frames', {}).get('n')} frame(s)"
        f"{' the search never saw' if doc.get('held_out_verification') else ''}: "
        f"**{'holds' if v.get('holds') else 'does NOT hold'}**.", "",
        "| lane | mAP | NDS | worst rel. RMSE | lost boxes | added boxes |", "|---|---|---|---|---|---|",
        f"| FP32 reference | {_f(ref.get('mAP'))} | {_f(ref.get('NDS'))} | - | - | - |",
    ]
    for name, lane in (("plain candidate", plain), ("this fix", fixed)):
        if lane:
            lines.append(f"| {name} | {_f(lane.get('mAP'))} | {_f(lane.get('NDS'))} | {_f(lane.get('worst_rel_rmse'))} "
                         f"| {lane.get('lost_boxes')} | {lane.get('added_boxes')} |")
    files = ((doc.get("pair") or {}).get("files") or doc.get("deployed_files")
             or list(graph_files))  # no `deployed_files`: the recipe's
    if doc.get("pair"):
        lines += ["", f"The pair is yours: the files of `{doc['pair']['dir']}` with the kept nodes' Casts added "
                  "(same file names, inputs and outputs)."]
    lines += ["", f"Files: {', '.join(f'`{f}`' for f in files)} (deploy these), `fp32.*.onnx` (the "
              f"FP32 {'graph' if len(files) == 1 else 'pair'} it was judged against), `nodes_to_exclude.json` "
              "(ONNX node names per file: ModelOpt AutoCast "
              "`nodes_to_exclude`, ONNX Runtime `quantize_static(nodes_to_exclude=...)`), `skip_layers.txt` (torch "
              "module names: AWML PTQ `--skip-layers`), `fix.json` (every step, figure and version).", "",
              "## Build the TensorRT engines", ""]
    for file in files:
        engine = file.replace(".onnx", ".engine")
        if kind == "fp16":
            lines += [f"`{file}` (its precision is in the graph: build it strongly typed, so TensorRT keeps the "
                      "FP32 nodes FP32):", "```",
                      f"trtexec --onnx={file} --stronglyTyped --saveEngine={engine}        # TensorRT 10 and 11",
                      f"polygraphy convert {file} --strongly-typed -o {engine}", "```"]
        else:
            lines += [f"`{file}` (explicit quantization: the Q/DQ nodes say what runs INT8):", "```",
                      f"trtexec --onnx={file} --int8 --fp16 --saveEngine={engine}       # TensorRT 10 (builder flags)",
                      f"trtexec --onnx={file} --stronglyTyped --saveEngine={engine}     # TensorRT 11 "
                      "(no INT8/FP16 flags)",
                      f"polygraphy convert {file} --int8 --fp16 -o {engine}              # TensorRT 10",
                      f"polygraphy convert {file} --strongly-typed -o {engine}          # TensorRT 11", "```"]
    lines += ["", "With TensorRT 10 a plain `--fp16` build (not strongly typed) may run the kept nodes in FP16 anyway; "
              "use `--stronglyTyped` there too.", "",
              "## Check it again", "", "```",
              "cpdebug fix --check .      # re-runs the verification here and names any "
              "ONNX Runtime / TensorRT / CUDA / driver version that changed", "```",
              "As a candidate (once `SPEC@DIR` is available): `cpdebug eval --backends torch,ort@DIR`.", ""]
    return "\n".join(lines)


def _f(x) -> str:
    return "-" if x is None else f"{x:.4g}"
