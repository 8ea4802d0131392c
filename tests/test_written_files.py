"""Issue 117, item 0: every ONNX file cp_debug writes for a user is whole on its own — it loads and runs in a fresh
process from where it was written, its weights in it or in a data file beside it, never a reference into the
process's temporary weights folder (`graph/weight_store.py`), which is gone when the process ends.

A model past `onnx_files.STORE_LIMIT` keeps its weights in that folder while the process runs (AWML's 768-grid
TransFusion configs, a 136 M-parameter Llama). Here the limit is lowered so that small models take the same path,
through every writer: export (both recipes), trt-kit, fix and a bug-report bundle."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cp_debug.graph import onnx_files, weight_store
from tests.cli_run import cpdebug

MODEL = '''
import torch


class Mlp(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.up = torch.nn.Linear(64, 512)
        self.mid = torch.nn.Linear(512, 64)
        self.out = torch.nn.Linear(64, 8)
        with torch.no_grad():
            self.up.weight.mul_(1e5)  # activations past float16's 65504: the fix keeps `up` in FP32

    def forward(self, x):
        return self.out(torch.tanh(self.mid(self.up(x)) * 1e-4))


def build():
    torch.manual_seed(0)
    return Mlp().eval(), (torch.randn(2, 64),)
'''

# run in a fresh process: each file loaded from where it lies (onnx's checker reads external data), run by ONNX
# Runtime from its path, and every external location said (none may leave the file's folder)
CHECK = '''
import json, sys
from pathlib import Path
import numpy as np, onnx, onnxruntime as ort
out = {}
for p in map(Path, sys.argv[1:]):
    m = onnx.load(str(p), load_external_data=False)
    locs = sorted({e.value for t in m.graph.initializer for e in t.external_data if e.key == "location"})
    onnx.checker.check_model(str(p))
    s = ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
    feed = {}
    for i in s.get_inputs():
        shape = [d if isinstance(d, int) else 1 for d in i.shape]
        dtype = np.int64 if "int64" in i.type else np.int32 if "int32" in i.type else np.float32
        feed[i.name] = np.zeros(shape, dtype)
    ran = True
    try:
        s.run(None, feed)
    except Exception:  # a zero feed a detector's graph refuses (no voxels): loading is what is checked
        ran = False
    out[str(p)] = {"locations": locs, "ran": ran}
print(json.dumps(out))
'''


def _onnx_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.onnx") if not p.name.startswith("."))


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
def test_every_writer_writes_files_that_stand_on_their_own(tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_files, "STORE_LIMIT", 64 << 10)  # every model here keeps its weights in files
    monkeypatch.setattr(weight_store, "STORE_MIN_BYTES", 16 << 10)
    (tmp_path / "mlp.py").write_text(MODEL)
    model = f"{tmp_path / 'mlp.py'}:build"
    env = {"CPDEBUG_CACHE_DIR": str(tmp_path / "cache")}
    runs = {
        "transfusion": ("export", "--recipe", "transfusion", "--preset", "transfusion-tiny", "--random-weights",
                        "--out", tmp_path / "transfusion"),
        "centerpoint": ("export", "--preset", "tiny", "--out", tmp_path / "centerpoint"),
        "kit": ("trt-kit", "--torch", model, "--out", tmp_path / "kit", "-q"),
        "fix": ("fix", "--torch", model, "--backends", "torch,ort-cpu-fp16", "--out", tmp_path / "fix", "-q"),
        "bundle": ("bisect", "--torch", model, "--backends", "torch,ort-cpu-fp16", "--bundle", tmp_path / "bundle",
                   "-q"),
    }
    written: dict[str, list[Path]] = {}
    for name, argv in runs.items():
        proc = cpdebug(*argv, env=env)
        assert proc.returncode in (0, 1), (name, proc.stdout[-1500:], proc.stderr[-1500:])
        written[name] = _onnx_files(tmp_path / name)
        assert written[name], (name, sorted(p.name for p in (tmp_path / name).rglob("*")))
    assert any(weight_store.folder().glob("*.data")), "the lowered limit kept no weights in files: nothing tested"

    files = [p for paths in written.values() for p in paths]
    proc = subprocess.run([sys.executable, "-c", CHECK, *map(str, files)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads(proc.stdout)
    for path, facts in seen.items():
        for loc in facts["locations"]:  # a data file beside the graph, named relative to it
            assert "/" not in loc and (Path(path).parent / loc).is_file(), (path, loc)
            assert "cpdebug_weights" not in loc, (path, loc)
    # the deployable ones run as written (a bundle's subgraph and the kit's graph take any zero feed too)
    for name in ("fix", "kit", "bundle"):
        assert any(seen[str(p)]["ran"] for p in written[name]), (name, seen)
