"""One story along the user's path (issue 115): a scale moved between two convs of a SqueezeNet (torchvision, random
weights, seeded; a ReLU between them: the same function in FP32) overflows float16 between them. The root's hint
verifies a keep set on its segment; the intervention at the outputs must confirm that same keep set — not a larger
set of the proposed blocks — and `cpdebug keep-fp32`'s 1-minimal search, which knows nothing of the bisect, finds
the same nodes. Before, the intervention confirmed "the set features.3, features.4, features.6" (21 nodes) beside
the hint's verified 4 and said the outputs "come back only with features.3 restored"."""

from __future__ import annotations

import json

import pytest

from tests.cli_run import cpdebug

pytestmark = pytest.mark.long  # an export and a keep-fp32 search (~15 s on 2 idle cores)

MODEL = '''
import torch, torchvision

def build():
    torch.manual_seed(0)
    m = torchvision.models.squeezenet1_1(weights=None).eval()
    with torch.no_grad():
        f3, f4 = m.features[3], m.features[4]
        f3.expand3x3.weight.mul_(3e5); f3.expand3x3.bias.mul_(3e5)
        f4.squeeze.weight[:, f3.expand1x1.out_channels:].div_(3e5)
    return m, (torch.rand(1, 3, 64, 64),)
'''


def test_the_verified_keep_set_is_the_confirmed_cure_and_the_one_keep_fp32_finds(tmp_path):
    import torch

    (tmp_path / "moved.py").write_text(MODEL)
    import importlib.util

    spec = importlib.util.spec_from_file_location("moved", tmp_path / "moved.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    net, (x,) = mod.build()
    with torch.no_grad():  # the plant, without cp_debug: the handed-on value leaves float16's range
        assert net.features[:4](x).abs().max().item() > 65504

    model = ("--torch", f"{tmp_path / 'moved.py'}:build")
    proc = cpdebug("bisect", *model, "-b", "torch,ort-cpu-fp16", "--json", tmp_path / "r.json", "--quiet")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-2000:]
    cause = json.loads((tmp_path / "r.json").read_text())["root_cause"]["ort-cpu-fp16"]
    assert cause["probe"] == "features.3.expand3x3", cause
    keep = cause["intervention"]["keep"]
    assert cause["intervention"]["confirmed"] and not cause["intervention"]["set"], cause["intervention"]
    assert f"verified: keeping {', '.join(keep)} in FP32" in cause["hint"], cause["hint"]
    assert "(the overflow's keep set: 4 node(s) kept in FP32) brings the outputs back" in cause["hint"]

    proc = cpdebug("keep-fp32", *model, "-b", "torch,ort-cpu-fp16", "--json", tmp_path / "k.json")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert sorted(json.loads((tmp_path / "k.json").read_text())["keep"]) == sorted(keep)
