"""Two small classifiers written here whose FP16 candidate flips a row's argmax (issue 115, twelfth stop, item 1):
`Softmax((x + off) − off)` over 4 classes. float16's rounding is monotonic, so a row flips only where its two top
logits round to one value (the tie goes to the first class).

- off = 0 (`tie`): rows whose two top logits lie 2e-4 apart near 1, inside one float16 step (9.8e-4): a near tie
  the format breaks, the probabilities 5e-5 apart — within FP16's budget over the output.
- off = 2000 (`fault`): float16's step at 2000 is 1, every logit rounds to an integer — a cancellation that moves
  rows whose logits lie 0.8 apart (0.6 and 1.4 both read 2001): the probabilities 0.17 apart, no tie.

`logits=True` leaves the Softmax out (a `--metric top1` reads the logits); `count` is a user's metric returning one
number (the rows whose class is 1)."""

from __future__ import annotations

import numpy as np

ROWS = 32
TIED = (3, 11)  # the rows made to flip


def build(off: float, logits: bool = False):
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("Add", ["x", "off"], ["shifted"], name="shift"),
             helper.make_node("Sub", ["shifted", "off"], ["back"], name="unshift")]
    out = "back"
    if not logits:
        nodes.append(helper.make_node("Softmax", ["back"], ["probs"], name="softmax", axis=-1))
        out = "probs"
    g = helper.make_graph(nodes, "flip_margin", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [ROWS, 4])],
                          [helper.make_tensor_value_info(out, TensorProto.FLOAT, [ROWS, 4])],
                          [numpy_helper.from_array(np.full(4, off, np.float32), "off")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def sample(off: float) -> np.ndarray:
    """Rows whose top two logits lie ≥ 0.3 apart (no tie of float16's at either offset: integer logits at 2000 are
    exact), and the `TIED` rows at the tie `off` makes."""
    rng = np.random.default_rng(0)
    x = np.zeros((ROWS, 4), np.float32)
    for k in range(ROWS):
        x[k] = rng.permutation([3.0, 2.0, 1.0, 0.0]) - 5.0 if off else rng.permutation([1.5, 1.0, 0.5, 0.0])
    for k in TIED:
        x[k] = [1.0001, 1.0003, -3.0, -3.0] if off == 0 else [0.6, 1.4, -3.0, -3.0]
    return x


def count(outputs, reference, label=None) -> float:
    """The rows whose class is 1 (a user's function: one number)."""
    return float(np.sum(np.argmax(next(iter(outputs.values())), -1) == 1))
