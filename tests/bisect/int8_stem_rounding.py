"""A small ONNX classifier written here, shaped as open_nsfw's stem (docs/trained-models.md, "open_nsfw's first
conv"): a first conv whose weights span ranges far apart across its output channels (channel 0 one tap of 1.0, the
others taps of ~0.02, as a BatchNorm folded in leaves them), then convs that mix those channels, a pooled head and a
Softmax of two classes read at its argmax. ONNX Runtime's `quantize_static` rounds the first conv's weights at one
per-tensor step (1/127): the small channels hold a level or two, most of their taps round to zero; the layers after
it amplify that error and labels flip, while the first conv's own error, measured at its own output against a range
channel 0 sets, ranks low."""

from __future__ import annotations

import numpy as np

STEM = "stem"
C, DEEP = 8, 4  # channels; the 3 × 3 convs after the mixing one


def build():
    """The FP32 graph (input `x`: (N, 3, 12, 12); output `probs`: (N, 2), a Softmax)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w0 = rng.normal(0, 0.02, (C, 3, 3, 3)).astype(np.float32)
    w0[0] = 0
    w0[0, 0, 1, 1] = 1.0  # the channel whose |w| max sets the per-tensor step
    w1 = rng.normal(0, 1.0, (C, C, 1, 1)).astype(np.float32) * 3
    w1[:, 0] = 0.03  # the mixing conv reads the small channels
    weights = [w0, w1, *(rng.normal(0, 0.4, (C, C, 3, 3)).astype(np.float32) for _ in range(2)),
               *(rng.normal(0, 0.55, (C, C, 3, 3)).astype(np.float32) for _ in range(DEEP))]
    wf = rng.normal(0, 1, (C, 2)).astype(np.float32)
    body = [helper.make_node("Conv", ["x", "w0"], ["c0"], name=STEM, pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c0"], ["r0"], name="relu0"),
            helper.make_node("Conv", ["r0", "w1"], ["c1"], name="mix")]
    for k in range(2, 2 + 2 + DEEP):
        body += [helper.make_node("Relu", [f"c{k - 1}"], [f"r{k - 1}"], name=f"relu{k - 1}"),
                 helper.make_node("Conv", [f"r{k - 1}", f"w{k}"], [f"c{k}"], name=f"conv{k}", pads=[1, 1, 1, 1])]
    last = 1 + 2 + DEEP
    body += [helper.make_node("Relu", [f"c{last}"], [f"r{last}"], name=f"relu{last}"),
             helper.make_node("GlobalAveragePool", [f"r{last}"], ["g"], name="pool"),
             helper.make_node("Flatten", ["g"], ["f"], name="flat")]
    inits = [numpy_helper.from_array(w, f"w{k}") for k, w in enumerate(weights)]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 12, 12])

    def model(nodes, inits, out, shape):
        graph = helper.make_graph(nodes, "stem_rounding", [x], [helper.make_tensor_value_info(out, TensorProto.FLOAT,
                                                                                               shape)], inits)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)

    # the head scaled and centred on the features: the labels near their ties, as a trained head's are
    import onnxruntime as ort

    feats = ort.InferenceSession(model(body, inits, "f", ["n", C]).SerializeToString(),
                                 providers=["CPUExecutionProvider"]).run(None, {"x": samples(64, 1)})[0]
    d = feats @ (wf[:, 1] - wf[:, 0])
    wf *= 3.0 / d.std()
    bias = np.array([0, -np.median(d) * 3.0 / d.std()], np.float32)
    inits += [numpy_helper.from_array(wf, "wf"), numpy_helper.from_array(bias, "bias")]
    body += [helper.make_node("MatMul", ["f", "wf"], ["mm"], name="fc"),
             helper.make_node("Add", ["mm", "bias"], ["logits"], name="fc_bias"),
             helper.make_node("Softmax", ["logits"], ["probs"], name="softmax", axis=1)]
    return model(body, inits, "probs", ["n", 2])


def samples(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 1, (n, 3, 12, 12)).astype(np.float32)


def label_metric(outputs, reference, label=None) -> float:
    """The share of the samples whose label (the Softmax's argmax) is the reference's."""
    out, ref = (np.asarray(next(iter(d.values()))) for d in (outputs, reference))
    return float(np.mean(out.argmax(1) == ref.argmax(1)))
