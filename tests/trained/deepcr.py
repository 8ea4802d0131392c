"""deepCR's cosmic-ray mask for Hubble's ACS/WFC (`learned_models/mask/ACS-WFC.pth` in the deepCR 0.3.1 package,
416 KB, BSD-3): a two-level U-Net (`UNet2SigmoidBatchNorm(1, 1, 32)`: double 3×3 conv blocks with BatchNorms, a max
pool, a transposed conv, a concatenation, a 1×1 conv, a Sigmoid) that reads an exposure in electrons and marks each
pixel a cosmic ray where its Sigmoid is above 0.5 (`deepCR.clean(threshold=0.5)`). Exported as a user exports it
(`torch.onnx.export`, the TorchScript exporter, opset 17, batch dynamic; the BatchNorms folded into the convs):
`tests/data/trained/deepcr_acs_wfc.onnx` (408 KB). Tried as a new user (docs/trained-models.md, fourteenth stop).

The exposures are made here as ACS/WFC's read (`frame`): a sky of 20–120 e⁻, stars and compact galaxies (Gaussian
PSFs of 10^2.5–10^5 e⁻), Poisson and 4 e⁻ read noise, then 15–40 cosmic-ray hits and short tracks of 200–6,300 e⁻.
The FP32 model finds every planted hit (16 frames of 256²: recall 1.0, 8–23 other pixels a frame). The decision
(`mask_metric`): the share of frames whose mask at 0.5 differs from the reference's in at most 5 pixels (the FP32
model's own flips under 1 e⁻ more read noise: 0–5 a frame)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

MODEL = Path(__file__).resolve().parents[1] / "data" / "trained" / "deepcr_acs_wfc.onnx"
FLIPS = 5  # pixels a frame may flip and keep its mask (the FP32 model under 1 e- more read noise: 0-5)


def frame(seed: int, n: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """An ACS/WFC-like exposure in electrons, 1×1×n×n float32, and its cosmic-ray pixels (n×n bool)."""
    r = np.random.default_rng(seed)
    img = np.full((n, n), r.uniform(20, 120))
    yy, xx = np.mgrid[:n, :n]
    for _ in range(r.integers(5, 25)):  # stars and compact galaxies
        y, x = r.uniform(0, n, 2)
        s, f = r.uniform(0.9, 3.0), 10 ** r.uniform(2.5, 5.0)
        img += f / (2 * np.pi * s * s) * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * s * s))
    img = r.poisson(np.clip(img, 0, None)).astype(np.float64) + r.normal(0, 4.0, img.shape)
    cr = np.zeros((n, n), bool)
    for _ in range(r.integers(15, 40)):  # cosmic rays: sharp, one pixel wide, some short tracks
        y, x = r.integers(2, n - 2, 2)
        length, angle, e = r.integers(1, 8), r.uniform(0, np.pi), 10 ** r.uniform(2.3, 3.8)
        for t in range(length):
            yi, xi = int(round(y + t * np.sin(angle))), int(round(x + t * np.cos(angle)))
            if 0 <= yi < n and 0 <= xi < n:
                img[yi, xi] += e * r.uniform(0.5, 1.0)
                cr[yi, xi] = True
    return img.astype(np.float32)[None, None], cr


def frames(first: int, count: int, n: int = 256) -> np.ndarray:
    """Exposures `first` … `first + count − 1` (`frame`), N×1×n×n."""
    return np.concatenate([frame(s, n)[0] for s in range(first, first + count)])


def mask_metric(outputs, reference, label=None) -> float:
    """The share of frames whose cosmic-ray mask at 0.5 differs from the reference's in at most `FLIPS` pixels."""
    a, b = (np.asarray(d["mask"], np.float32) > 0.5 for d in (outputs, reference))
    return float(np.mean((a != b).reshape(len(a), -1).sum(-1) <= FLIPS))


def _source(dist, tail: str) -> Path:
    return next(Path(str(f.locate())) for f in dist.files if str(f).replace("\\", "/").endswith(tail))


def export(path: Path = MODEL) -> Path:
    """The wheel's mask weights in deepCR's own `UNet2SigmoidBatchNorm`, exported as a user exports it (deepCR 0.3.1:
    `pip install --no-deps deepCR==0.3.1`; its package's import asks for tensorboard, so the model's two modules are
    read from where pip put them)."""
    from importlib import metadata

    import torch

    dist = metadata.distribution("deepCR")
    parts = _source(dist, "deepCR/parts_batchnorm.py")
    names: dict = {}
    exec(compile(parts.read_text(), str(parts), "exec"), names)  # noqa: S102 - the package's own module
    unet = parts.with_name("unet_batchnorm.py")
    exec(compile(unet.read_text().replace("from deepCR.parts_batchnorm import *", ""), str(unet), "exec"), names)  # noqa: S102
    net = names["UNet2SigmoidBatchNorm"](1, 1, 32)
    state = torch.load(_source(dist, "learned_models/mask/ACS-WFC.pth"), map_location="cpu")
    net.load_state_dict({k.removeprefix("module."): v for k, v in state.items()})  # deepCR's WrappedModel
    net.eval()
    torch.onnx.export(net, torch.from_numpy(frame(0, 64)[0]), str(path), input_names=["x"], output_names=["mask"],
                      dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}, "mask": {0: "n", 2: "h", 3: "w"}},
                      opset_version=17, dynamo=False)
    return path
