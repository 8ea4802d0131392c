"""A mixture of experts' other QMoE formats (issue 116, s20): the tiny GPT-OSS of `llm_moe.py` built by ONNX Runtime
GenAI's builder as a user would ask for other experts — `is_symmetric=false` (the builder keeps the QMoE symmetric:
"This model only supports symmetric quantization for `QMoE`"; its MatMulNBits get zero points), `qmoe_block_size`
64 / 128 (wider than this model's K = 64: a scale a row, [E, N, 1]) and 0 (a row each, [E, N]), 8-bit experts
(`moe_quant_type=int8`, with `-p int4` and `-p int8`) — and one QMoE with zero points made by hand (the builder
writes none for the CPU): the INT4 file's experts re-quantized from the FP32 file's MoE weights, asymmetric, uint4
in blocks of 32 with their zero points (onnxruntime's QMoE inputs 11-12).

The right answers without cp_debug: PyTorch's greedy tokens against each file's (`llm_files._answers`), and each
QMoE's experts dequantized by hand here (numpy, the layout of onnxruntime's contrib op) against the FP32 file's MoE
weights (relative RMS) and against ONNX Runtime's own QMoE: one QMoE node run on random tokens beside one float MoE
node holding the hand-dequantized experts (relative max difference). Run in the builder's venv:

    /tmp/genai-venv/bin/python benchmarks/llm_moe_formats.py OUT_DIR [--tokens 8]

Writes OUT_DIR/gptoss/{hf,fp32,int4,…} and OUT_DIR/answers.json (tests/data/llm/answers_moe_formats.json).
"""
import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import llm_files as L  # noqa: E402

HF = Path(__file__).resolve().parents[1] / "tests" / "data" / "llm" / "gptoss_moe" / "hf"
BUILDS = {  # folder: (precision, extra options) — what a user asks the builder for
    "fp32": ("fp32", None), "int4": ("int4", None),
    "int4_asym": ("int4", {"is_symmetric": "false"}),
    "int4_b64": ("int4", {"qmoe_block_size": "64"}), "int4_b128": ("int4", {"qmoe_block_size": "128"}),
    "int4_rows": ("int4", {"qmoe_block_size": "0"}),
    "int4_moe8": ("int4", {"moe_quant_type": "int8"}), "int8": ("int8", {"moe_quant_type": "int8"}),
}


def by_hand(packed, scales, zp, bits: int, block: int) -> np.ndarray:
    """[E, N, K] float from onnxruntime's QMoE layout: 4-bit values the low nibble first, a scale a block (or a row),
    zero points packed as the values (the middle level without them)."""
    e, n, width = packed.shape
    q = np.stack([packed & 15, packed >> 4], -1).reshape(e, n, -1) if bits == 4 else packed
    k = q.shape[-1]
    s = scales.reshape(e, n, -1).astype(np.float64)
    blocks = s.shape[-1]
    if zp is None:
        z = np.full((e, n, blocks), 2.0 ** (bits - 1))
    elif zp.ndim == 3:
        z = (np.stack([zp & 15, zp >> 4], -1).reshape(e, n, -1) if bits == 4 else zp)[..., :blocks].astype(np.float64)
    else:
        z = (np.stack([zp & 15, zp >> 4], -1).reshape(e, -1) if bits == 4 else zp)[:, :n, None].astype(np.float64)
    span = k // blocks
    return ((q.reshape(e, n, blocks, span) - z[..., None]) * s[..., None]).reshape(e, n, k)


def quantize_asym(w: np.ndarray, block: int = 32):
    """[E, N, K] float → (uint4 packed [E, N, K/2], scales [E, N, K/block], zero points [E, N, ⌈blocks/2⌉])."""
    e, n, k = w.shape
    b = w.reshape(e, n, k // block, block)
    lo, hi = np.minimum(b.min(-1), 0), np.maximum(b.max(-1), 0)
    scale = np.where(hi > lo, (hi - lo) / 15, 1.0).astype(np.float32)
    z = np.clip(np.round(-lo / scale), 0, 15).astype(np.uint8)
    q = np.clip(np.round(b / scale[..., None]) + z[..., None], 0, 15).astype(np.uint8).reshape(e, n, k)
    zz = np.concatenate([z, np.zeros((e, n, z.shape[-1] % 2), np.uint8)], -1)
    return q[..., 0::2] | (q[..., 1::2] << 4), scale, zz[..., 0::2] | (zz[..., 1::2] << 4)


def with_zero_points(int4: Path, fp32: Path, out: Path) -> Path:
    """The INT4 file, each QMoE's experts re-quantized from the FP32 file's MoE weights with zero points."""
    import onnx
    from onnx import numpy_helper as nh

    out.mkdir(parents=True, exist_ok=True)
    m, f = onnx.load(str(int4)), onnx.load(str(fp32))
    floats = {i.name: nh.to_array(i) for i in f.graph.initializer}
    moes = [n for n in f.graph.node if n.op_type == "MoE"]
    for node, ref in zip([n for n in m.graph.node if n.op_type == "QMoE"], moes):
        ins = list(node.input) + [""] * (13 - len(node.input))
        for w, sc, zpi, src in ((2, 3, 11, 2), (5, 6, 12, 4)):
            packed, scales, zp = quantize_asym(floats[ref.input[src]])
            for name, arr in ((ins[w], packed), (ins[sc], scales.astype(nh.to_array(
                    next(i for i in m.graph.initializer if i.name == ins[sc])).dtype))):
                init = next(i for i in m.graph.initializer if i.name == name)
                init.CopyFrom(nh.from_array(arr, name))
            ins[zpi] = f"{node.name}/zero_points_{w}"
            m.graph.initializer.append(nh.from_array(zp, ins[zpi]))
        del node.input[:]
        node.input.extend(ins[:13])
    onnx.save(m, str(out / "model.onnx"), save_as_external_data=True, location="model.onnx.data")
    shutil.copy(int4.parent / "genai_config.json", out / "genai_config.json")
    return out / "model.onnx"


def experts_by_hand(path: Path, fp32: Path, seed: int = 0) -> list[dict]:
    """Each QMoE: its experts dequantized by hand against the FP32 file's (relative RMS), and ONNX Runtime's QMoE
    against a float MoE of those experts on random tokens (relative max difference)."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper
    from onnx import numpy_helper as nh

    m, f = onnx.load(str(path)), onnx.load(str(fp32))
    inits = {i.name: nh.to_array(i) for i in m.graph.initializer}
    floats = {i.name: nh.to_array(i) for i in f.graph.initializer}
    rng = np.random.default_rng(seed)
    out = []
    for node, ref in zip([n for n in m.graph.node if n.op_type == "QMoE"], [n for n in f.graph.node
                                                                          if n.op_type == "MoE"]):
        a = {x.name: helper.get_attribute_value(x) for x in node.attribute}
        ins = list(node.input) + [""] * 14
        deq = {w: by_hand(inits[ins[w]], inits[ins[sc]], inits.get(ins[zpi]), a["expert_weight_bits"],
                          a.get("block_size", 0)) for w, sc, zpi in ((2, 3, 11), (5, 6, 12))}
        rel = {w: float(np.sqrt(np.mean((deq[w] - floats[ref.input[src]]) ** 2) / np.mean(floats[ref.input[src]] ** 2)))
               for w, src in ((2, 2), (5, 4))}
        e, _, hidden = deq[2].shape
        x = rng.standard_normal((9, hidden)).astype(np.float32)
        probs = rng.standard_normal((9, e)).astype(np.float32)
        q_inits = [nh.from_array(inits[n], n) for n in ins if n in inits]
        moe_attrs = {k: v for k, v in a.items() if k not in ("expert_weight_bits", "block_size")}
        graphs = {
            "qmoe": helper.make_node("QMoE", ins[:max(i for i, n in enumerate(ins) if n) + 1], ["y"],
                                     domain="com.microsoft", **a),
            "moe": helper.make_node("MoE", ["x", "p", "w1", ins[4], "w2", ins[7]], ["y"], domain="com.microsoft",
                                    **moe_attrs)}
        got = {}
        for kind, n in graphs.items():
            extra = [nh.from_array(deq[2].astype(np.float32), "w1"), nh.from_array(deq[5].astype(np.float32), "w2")]
            n.input[0], n.input[1] = "x", "p"
            g = helper.make_graph([n], kind, [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape),
                                              helper.make_tensor_value_info("p", TensorProto.FLOAT, probs.shape)],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                                  q_inits + (extra if kind == "moe" else []))
            model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21),
                                                        helper.make_opsetid("com.microsoft", 1)])
            sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
            got[kind] = sess.run(None, {"x": x, "p": probs})[0]
        out.append({"node": node.name, "bits": int(a["expert_weight_bits"]), "block_size": int(a.get("block_size", 0)),
                    "zero_points": bool(ins[11] or ins[12]), "vs_fp32_rel_rms": rel,
                    "ort_qmoe_vs_float_moe_rel_max": float(np.abs(got["qmoe"] - got["moe"]).max()
                                                           / np.abs(got["moe"]).max())})
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--tokens", type=int, default=8)
    args = ap.parse_args()
    hf = args.out / "gptoss" / "hf"
    if not (hf / "config.json").is_file():
        shutil.copytree(HF, hf)
        L._tokenizer(hf, 256)
    files = {p: L.build(hf, hf.parent / p, prec, extra) for p, (prec, extra) in BUILDS.items()}
    files["int4_zp"] = with_zero_points(files["int4"], files["fp32"], hf.parent / "int4_zp")
    experts = {p: experts_by_hand(path, files["fp32"]) for p, path in files.items() if p != "fp32"}
    answers = {"versions": L.versions(), "prompt": L.PROMPT, "tokens": args.tokens, "experts": experts,
               "models": {"gptoss": L._answers(hf, files, args.tokens, args.out)}}
    (args.out / "answers.json").write_text(json.dumps(answers, indent=1))
    print(L.scorecard(answers))
    print("\n".join(f"{p} {r}" for p, rows in experts.items() for r in rows))

if __name__ == "__main__":
    main()
