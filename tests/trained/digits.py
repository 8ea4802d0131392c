"""digit-recognizer-py's handwritten-digit CNN (`digit_recognizer/models/handwriting_model.pth` in the
digit-recognizer-py 0.1.0 wheel, 1.5 MB, MIT): three Conv → ReLU → MaxPool blocks (32, 64, 128 channels) and two
Linear layers, trained on MNIST (28×28, white strokes on black, normalised by (x − 0.1307) / 0.3081). Exported here as
a user exports it (`torch.onnx.export`, the TorchScript exporter, opset 17, batch dynamic):
`tests/data/trained/digit_cnn.onnx` (1.6 MB). Tried as a new user (docs/trained-models.md, twelfth stop).

The digits are scikit-learn's `load_digits` (1797 handwritten 8×8 digits shipped in the scikit-learn wheel), each
scaled to 20×20 and centred on a 28×28 black field as MNIST's are, then normalised as the package's recognizer does.
The decision (`digit_metric`): the share of images whose digit (the argmax of `logits`) is the reference's."""

from __future__ import annotations

from pathlib import Path

import numpy as np

MODEL = Path(__file__).resolve().parents[1] / "data" / "trained" / "digit_cnn.onnx"


def export(path: Path = MODEL) -> Path:
    """The wheel's weights loaded into its own `CNN`, exported as a user exports it."""
    import torch
    from digit_recognizer.model import CNN
    from digit_recognizer.recognizer import DEFAULT_MODEL_PATH

    net = CNN()
    net.load_state_dict(torch.load(DEFAULT_MODEL_PATH, map_location="cpu"))
    net.eval()
    torch.onnx.export(net, torch.zeros(1, 1, 28, 28), str(path), input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17, dynamo=False)
    return path


def images(first: int, count: int) -> np.ndarray:
    """scikit-learn's digits `first` … `first + count − 1`, as the model reads them: N×1×28×28 float32."""
    from PIL import Image
    from sklearn.datasets import load_digits

    raw = load_digits().images[first:first + count]  # 0 … 16, strokes high
    out = np.zeros((len(raw), 1, 28, 28), np.float32)
    for i, d in enumerate(raw):
        im = Image.fromarray((d * (255 / 16)).astype(np.uint8)).resize((20, 20), Image.BILINEAR)
        out[i, 0, 4:24, 4:24] = np.asarray(im, np.float32) / 255
    return (out - 0.1307) / 0.3081


def digit_metric(outputs, reference, label=None) -> float:
    """The share of images whose digit (the argmax of `logits`) is the reference's."""
    out, ref = (np.asarray(d["logits"], dtype=np.float32) for d in (outputs, reference))
    return float(np.mean(out.argmax(-1) == ref.argmax(-1)))
