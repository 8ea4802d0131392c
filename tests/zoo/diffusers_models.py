"""diffusers' AutoencoderKL (a small config, random weights, no download) for `--torch FILE:FUNC`: its decoder as
Stable Diffusion pipelines export it (latents → image), healthy or with one conv of its second up block scaled so
that its FP32 output reaches 1.69e5, beyond FP16's 65504 (the SD-VAE case of issue 84)."""

from __future__ import annotations

import torch


class Decode(torch.nn.Module):
    """The VAE's decoder as SD pipelines export it: latents → image."""

    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, z):
        return self.vae.decode(z).sample


def _vae():
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(32, 64),
                         down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                         layers_per_block=1, norm_num_groups=8, sample_size=32).eval()


def latents():
    return torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(1))


def healthy():
    return Decode(_vae()).eval(), (latents(),)


def overflow():
    net = Decode(_vae()).eval()
    with torch.no_grad():
        net.vae.decoder.up_blocks[1].resnets[0].conv1.weight.mul_(1e5)
    return net, (latents(),)


def overflow_fp16_file(folder, **convert):
    """The planted decoder as the user's own FP16 file, as diffusers' and Olive's ONNX pipelines make it: TorchScript
    export (input `latent_sample`, output `sample`, opset 17), then onnxconverter-common's
    `convert_float_to_float16(keep_io_types=True, **convert)`, written to `folder/vae_decoder.onnx` (the folder made);
    returns the folder. Needs diffusers and onnxconverter-common."""
    import warnings
    from pathlib import Path

    import onnx
    from onnxconverter_common import float16

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    net, inputs = overflow()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, inputs, str(folder / "vae_fp32.onnx"), dynamo=False, opset_version=17,
                          input_names=["latent_sample"], output_names=["sample"])
        half = float16.convert_float_to_float16(onnx.load(folder / "vae_fp32.onnx"), keep_io_types=True, **convert)
    (folder / "vae_fp32.onnx").unlink()
    onnx.save(half, folder / "vae_decoder.onnx")
    return folder
