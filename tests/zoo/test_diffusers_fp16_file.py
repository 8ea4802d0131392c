"""The user's own FP16 file of a diffusers VAE decoder (issue 84, item 3), as diffusers' and Olive's ONNX pipelines
make it: TorchScript-exported (input `latent_sample`, output `sample`) and converted by onnxconverter-common's
`convert_float_to_float16(keep_io_types=True)`, given as `-b torch,ort@DIR`. Before: exit 2 (its names), then the
overflow blamed on a healthy mid-block conv with no reason — the file's segments were fed float32 (typed float32 from
their input on: no float16 storage, no overflow in the local error) and the other exporter's GroupNorm and SiLU made
every conv 'a graph difference'. Now: the converter's file is refused by ONNX Runtime as it is (the attention's
Cast(to=float) left writing float32), which is exit 3 with ONNX Runtime's line and the converter option that avoids it
(issue 107, item 4); converted again with that option, its one input and output read by order, the planted conv named
with the FP16 reason its FP32 value gives, and the keep verified."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from tests.cli_run import cpdebug

pytestmark = pytest.mark.slow  # scheduled first under xdist (tests/conftest.py)

MODELS = Path(__file__).with_name("diffusers_models.py")
CONV = "vae.decoder.up_blocks.1.resnets.0.conv1"


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
def test_a_diffusers_vae_fp16_file_names_its_overflowing_conv(tmp_path):
    pytest.importorskip("diffusers")
    pytest.importorskip("onnxconverter_common.float16")
    from tests.zoo import diffusers_models

    import onnxruntime

    diffusers_models.overflow_fp16_file(tmp_path / "refused")
    proc = cpdebug("bisect", "--torch", f"{MODELS}:overflow", "-b", "torch,ort@refused", "--quiet", cwd=tmp_path)
    # onnxconverter-common leaves the attention's Cast(to=float) writing float32 into its float16 graph: ONNX Runtime
    # refuses the file as it is (on CUDA as on the CPU), which the CPU's emulated float16 storage alone would hide
    assert proc.returncode == 3, proc.stdout[-3000:] + proc.stderr[-2000:]
    line = proc.stderr.strip().splitlines()[-1]
    assert f"vae_decoder.onnx: ONNX Runtime {onnxruntime.__version__} cannot load this file: " in line, line
    blocked = ast.literal_eval(line.split("node_block_list=")[1].split("]")[0] + "]")  # the cure the line gives
    diffusers_models.overflow_fp16_file(tmp_path / "fp16", node_block_list=blocked)
    proc = cpdebug("bisect", "--torch", f"{MODELS}:overflow", "-b", "torch,ort@fp16", "--json", "r.json", "--quiet",
                   cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-2000:]
    report = json.loads((tmp_path / "r.json").read_text())
    notes = "\n".join(report["warnings"])
    assert "'sample' as 'output0'" in notes and "'latent_sample' as 'z'" in notes, notes
    assert report["judged_at"]["ort@fp16"] == "fp16"
    cause = report["root_cause"]["ort@fp16"]
    assert cause["probe"] == CONV, cause
    hint = cause["hint"]
    assert hint.startswith(f"FP16 overflow at {CONV}: Conv"), hint  # no 'graph difference' before it
    value = float(hint.split("|x| = ")[1].split(" ")[0])
    assert 1.5e5 < value < 1.9e5 and "verified: keeping" in hint, hint
