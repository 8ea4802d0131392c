"""export/cache.py: an export is read back by a content hash of the module, its weights, its example inputs and the
settings — in another process without loading torch's ONNX exporter — and the folder stays bounded."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from cp_debug.export.cache import CACHE_ENV, NO_CACHE_ENV, export_cached
from cp_debug.files import prune_cache
from tests.tiny_net import INPUT_NAMES, OUTPUT_NAMES, TinyNet

ROOT = Path(__file__).resolve().parents[2]


def _net(seed: int = 0) -> TinyNet:
    torch.manual_seed(seed)
    return TinyNet().eval()


def _export(net, x):
    return export_cached(net, (x,), INPUT_NAMES, OUTPUT_NAMES, exporter="torchscript", opset=17, extra="tiny")


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(NO_CACHE_ENV, raising=False)
    return tmp_path / "cache" / "exports"


def test_second_export_is_read_back_and_a_changed_weight_or_input_exports_again(cache):
    net, x = _net(), torch.from_numpy(np.random.RandomState(0).randn(1, 4, 16, 16).astype(np.float32))
    first = _export(net, x)
    again = _export(copy.deepcopy(net), x.clone())
    assert (first.cache, again.cache) == ("stored", "hit")
    assert again.model.SerializeToString() == first.model.SerializeToString() and again.exporter == "torchscript"
    assert sorted(p.suffix for p in cache.iterdir()) == [".json", ".onnx"]
    changed = copy.deepcopy(net)
    with torch.no_grad():
        changed.c2.weight[0, 0, 0, 0] += 1e-3
    assert _export(changed, x).cache == "stored"
    assert _export(net, x * 2).cache == "stored"  # a trace may freeze a value-dependent branch: inputs are key
    assert len(list(cache.glob("*.onnx"))) == 3


def test_a_new_process_reads_the_graph_without_torch_onnx(cache):
    x = torch.from_numpy(np.random.RandomState(0).randn(1, 4, 16, 16).astype(np.float32))
    assert _export(_net(), x).cache == "stored"
    code = ("import sys, numpy as np, torch\nfrom tests.export.test_cache import _export, _net\n"
            "x = torch.from_numpy(np.random.RandomState(0).randn(1, 4, 16, 16).astype(np.float32))\n"
            "r = _export(_net(), x)\n"
            "print(r.cache, sorted(m for m in ('torch.onnx', 'torch._dynamo', 'sympy') if m in sys.modules))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    assert out.stdout.split()[0] == "hit" and out.stdout.strip().endswith("[]"), out.stdout


def test_off_damaged_or_unwritable_cache_still_exports(cache, tmp_path, monkeypatch):
    x = torch.zeros(1, 4, 16, 16)
    monkeypatch.setenv(NO_CACHE_ENV, "1")
    assert _export(_net(), x).cache is None and not cache.exists()
    monkeypatch.setenv(NO_CACHE_ENV, "0")  # "0" is off, not on
    assert _export(_net(), x).cache == "stored"
    graph = next(cache.glob("*.onnx"))
    graph.write_bytes(b"not a graph")  # a damaged entry is exported again and rewritten
    assert _export(_net(), x).cache == "stored" and _export(_net(), x).cache == "hit"
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv(CACHE_ENV, str(blocker / "cache"))  # cannot be made: run on without it
    result = _export(_net(), x)
    assert result.cache is None and len(result.model.graph.node) > 0


def test_prune_drops_least_recently_used_entries_whole(tmp_path):
    folder = tmp_path / "exports"
    folder.mkdir()
    now = time.time()
    for i, key in enumerate(("old", "mid", "new")):
        for suffix, size in ((".onnx", 1000), (".json", 100)):
            p = folder / f"{key}{suffix}"
            p.write_bytes(b"x" * size)
            os.utime(p, (now - 100 + i, now - 100 + i))
    orphan = folder / ".old.onnx.tmp"
    orphan.write_bytes(b"x")
    os.utime(orphan, (now - 7200, now - 7200))
    assert prune_cache(folder, 2300) == ["old"]
    assert sorted(p.name for p in folder.iterdir()) == ["mid.json", "mid.onnx", "new.json", "new.onnx"]
    assert prune_cache(folder, 0) == ["mid", "new"] and not list(folder.iterdir())


def test_the_recipe_subject_reads_its_stages_back(cache):
    from cp_debug.recipes.centerpoint.subject import centerpoint_subject

    first, again = (centerpoint_subject("tiny", random_weights=True, trace_side=64) for _ in range(2))
    for a, b in zip(first.stages, again.stages):
        assert a.onnx().SerializeToString() == b.onnx().SerializeToString()
        assert (a.export_cache, b.export_cache) == ("stored", "hit") and b.exporter == "torchscript"


class _Warns(torch.nn.Module):
    """A module whose trace warns (a tensor read as a Python bool), as CenterPoint's pillar encoder does."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 3)

    def forward(self, x):
        if x.shape[0] > 1 and bool(x.sum() > -1e9):  # data-dependent: a TracerWarning
            x = x * 1.0
        return self.lin(x)


def test_a_file_export_is_read_back_whole_with_its_warnings_and_a_changed_weight_exports_again(cache, tmp_path):
    """recipes/centerpoint/export.export_stage (the deployment files of export, eval, fix, bench, infer): the second
    export of the same module is a cache entry read back — the same bytes, the same warnings said again — and one
    changed weight exports afresh."""
    import warnings

    from cp_debug.recipes.centerpoint.export import export_stage

    torch.manual_seed(0)
    net, x = _Warns().eval(), torch.randn(5, 4)

    def export(name: str) -> tuple[bytes, list[str]]:
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            path = export_stage(net, (x,), ["x"], ["y"], {"x": {0: "n"}}, tmp_path / f"{name}.onnx",
                                metadata={"cp_debug.preset": "none"})
        return path.read_bytes(), sorted(f"{w.category.__name__}: {w.message}" for w in said)

    first, said_first = export("a")
    assert len(list(cache.glob("*.onnx"))) == 1
    second, said_second = export("b")
    assert second == first and len(list(cache.glob("*.onnx"))) == 1  # read back, not exported again
    assert said_second == said_first and any(s.startswith("TracerWarning") for s in said_first)
    with torch.no_grad():
        net.lin.bias[0] += 1.0
    third, _ = export("c")
    assert third != first and len(list(cache.glob("*.onnx"))) == 2


def test_one_commands_keys_hash_the_weights_once_and_see_every_counted_change():
    """`digests_kept`: within one command the weights' digest is kept while torch counts no change of them (the export's
    key and the trace's hash 547 MB once, not twice); the key is the one hashed afresh; an in-place change is seen;
    a change through `.data` (not counted) is seen by `fresh` and by every key outside the span."""
    from cp_debug.export.cache import digests_kept, export_key, weights_digest

    net, x = _net(), torch.zeros(1, 4, 16, 16)
    plain = export_key(net, (x,), {"a": 1})
    with digests_kept():
        assert export_key(net, (x,), {"a": 1}) == plain
        kept = weights_digest(net)
        assert weights_digest(net) is kept  # not hashed again
        with torch.no_grad():
            net.c2.weight[0, 0, 0, 0] += 1e-3  # counted (`_version`)
        counted = export_key(net, (x,), {"a": 1})
        assert counted != plain and counted == export_key(copy.deepcopy(net), (x,), {"a": 1})
        net.c2.weight.data[0, 0, 0, 0] += 1e-3  # not counted: the kept digest stands, a fresh one sees it
        assert export_key(net, (x,), {"a": 1}) == counted
        assert export_key(net, (x,), {"a": 1}, fresh=True) != counted
    net.c2.weight.data[0, 0, 0, 0] += 1e-3
    assert export_key(net, (x,), {"a": 1}) == export_key(copy.deepcopy(net), (x,), {"a": 1})  # outside: always hashed

