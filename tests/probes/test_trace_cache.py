"""probes/trace_cache.py: a module trace read back from the cache equals a fresh one; anything it hangs on (a weight,
an input, an attribute, the prefix, a `--torch` file's own code) is another key; a pass that changes state the run
reads later is never stored."""

from __future__ import annotations

import copy
import dataclasses
import warnings

import pytest
import torch
from torch import nn

from cp_debug.export.cache import CACHE_ENV, NO_CACHE_ENV
from cp_debug.probes.torch_trace import ModuleTrace, trace_module
from cp_debug.probes.trace_cache import traced
from tests.zoo import models


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(NO_CACHE_ENV, raising=False)
    return tmp_path / "cache" / "traces"


def _entries(folder) -> int:
    return len(list(folder.glob("*.json"))) if folder.exists() else 0


def _same(a: ModuleTrace, b: ModuleTrace) -> None:
    """Equal, every table in the same order, and tuples and Sites where the fresh trace has them."""
    assert a == b
    for f in dataclasses.fields(ModuleTrace):
        x, y = getattr(a, f.name), getattr(b, f.name)
        assert type(x) is type(y), f.name
        if isinstance(x, dict):
            assert list(x) == list(y), f.name
            assert [type(v) for v in x.values()] == [type(v) for v in y.values()], f.name
    assert all(type(s.path) is tuple for s in b.sites.values())


class Block(nn.Module):
    """torchvision's BasicBlock as it runs: `self.relu` called twice, a downsample branch, BatchNorm in eval mode
    (torchvision itself takes 2.5 CPU-s to import)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, 2, 1, bias=False), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, 2, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + self.downsample(x))


def _resnet_like():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), Block(8, 16), Block(16, 16),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))
    return net.eval(), (torch.randn(1, 3, 32, 32),)


class Outputs(nn.Module):
    """A tuple with a None in it and a dict keyed by a str and an int, each holding this call's own tensors."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.flag = False  # a plain attribute the forward branches on

    def forward(self, x):
        y = self.conv(x)
        return (y.relu(), None), {"score": y.sigmoid(), 3: (y * 2 if self.flag else y - 1)}


class Wrap(nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = Outputs()

    def forward(self, x):
        return self.inner(x)


@pytest.mark.parametrize("build", [_resnet_like, models.build_twice, models.build_text,
                                   lambda: (Wrap().eval(), (torch.randn(1, 3, 8, 8),))],
                         ids=["resnet-like", "called-twice", "dataclass-output", "tuple-and-dict-output"])
def test_a_hit_equals_a_fresh_trace(cache, build):
    module, example = build()
    fresh = trace_module(module, example)
    assert _entries(cache) == 0
    first = traced(module, example)
    assert _entries(cache) == 1
    again = traced(copy.deepcopy(module), tuple(x.clone() for x in example))  # found by content, not identity
    assert _entries(cache) == 1
    _same(fresh, first)
    _same(fresh, again)


def test_a_changed_weight_input_attribute_or_prefix_misses(cache):
    torch.manual_seed(0)
    net, x = Wrap().eval(), torch.randn(1, 3, 8, 8)
    traced(net, (x,))
    with torch.no_grad():
        net.inner.conv.weight[0, 0, 0, 0] += 1e-3
    traced(net, (x,))
    assert _entries(cache) == 2
    traced(net, (x * 2,))
    assert _entries(cache) == 3
    net.inner.flag = True
    flagged = traced(net, (x,))
    assert _entries(cache) == 4 and flagged == trace_module(net, (x,))
    net.inner.cpdebug_trace_skip = True  # the trace passes over it: another tree
    skipped = traced(net, (x,))
    assert _entries(cache) == 5 and "inner" not in skipped.order and skipped == trace_module(net, (x,))
    prefixed = traced(net, (x,), prefix="stage.")
    assert _entries(cache) == 6 and prefixed == trace_module(net, (x,), prefix="stage.")
    # a `--torch` file's own code (bisect.subjects.loaders.user_code: a helper its forward calls, in another of its
    # files)
    traced(net, (x,), extra={"user_code": [("helper.py", "1")]})
    traced(net, (x,), extra={"user_code": [("helper.py", "2")]})
    assert _entries(cache) == 8


def test_with_the_cache_off_or_unwritable_it_traces(cache, monkeypatch, tmp_path):
    net, example = models.build_twice()
    monkeypatch.setenv(NO_CACHE_ENV, "1")
    assert traced(net, example) == trace_module(net, example)
    assert not cache.parent.exists()
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.delenv(NO_CACHE_ENV)
    monkeypatch.setenv(CACHE_ENV, str(blocker))  # its `traces` folder cannot be made
    assert traced(net, example) == trace_module(net, example)


class Counting(nn.Module):
    """An eval-mode module whose forward moves a buffer (an observer's running max)."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.register_buffer("seen", torch.zeros(()))

    def forward(self, x):
        self.seen.copy_(torch.maximum(self.seen, x.abs().max()))
        return self.lin(x)


class Noisy(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x):
        return self.lin(x + torch.rand_like(x))


def test_a_pass_that_changes_what_the_run_reads_later_is_traced_every_time(cache):
    x = torch.randn(2, 4)
    bn = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)).train()  # running statistics move
    for module in (bn, Counting().eval(), Noisy().eval()):
        traced(module, (x,))
        assert _entries(cache) == 0, type(module).__name__
    hooked, calls = nn.Sequential(nn.Linear(4, 4)).eval(), []
    hooked[0].register_forward_hook(lambda *a: calls.append(1))  # a user's recorder: a hit would skip it
    for _ in range(2):
        traced(hooked, (x,))
    assert _entries(cache) == 0 and len(calls) == 2


class Warns(nn.Module):
    def forward(self, x):
        warnings.warn("this forward warns", UserWarning, stacklevel=2)
        return x * 2


def test_what_the_pass_warned_is_warned_again_on_a_hit(cache):
    seen = []
    for _ in range(2):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            traced(Warns().eval(), (torch.ones(2),))
        seen.append([(w.category, str(w.message)) for w in caught])
    assert _entries(cache) == 1
    assert seen[0] == seen[1] == [(UserWarning, "this forward warns")]


class Halves(nn.Module):
    """Takes an even length only (a net whose strides do not divide the size: what `sized_shapes` tries)."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x):
        a, b = x.reshape(2, -1, 4)  # raises on an odd first axis
        return self.lin(a + b)


def test_a_failed_pass_is_raised_again_from_the_cache_where_asked(cache, monkeypatch):
    from cp_debug.probes import trace_cache

    module, odd, even = Halves().eval(), torch.randn(3, 4), torch.randn(4, 4)
    with pytest.raises(RuntimeError) as first:
        traced(module, (odd,), remember_failure=True)
    assert _entries(cache) == 1
    passes = []
    monkeypatch.setattr(trace_cache, "trace_module", lambda *a, **k: passes.append(1) or trace_module(*a, **k))
    with pytest.raises(trace_cache.TraceFailed, match="RuntimeError: ") as again:
        traced(module, (odd,), remember_failure=True)
    assert passes == [] and str(first.value) in str(again.value)
    with pytest.raises(RuntimeError) as plain:  # a caller that did not ask runs the pass (and its own error)
        traced(module, (odd,))
    assert passes == [1] and type(plain.value) is RuntimeError
    traced(module, (even,), remember_failure=True)  # another input: another key, traced and stored
    assert _entries(cache) == 2 and passes == [1, 1]


def test_a_memory_error_is_never_kept(cache):
    class Short(nn.Module):
        def forward(self, x):
            raise MemoryError("out of memory")

    for _ in range(2):
        with pytest.raises(MemoryError):
            traced(Short().eval(), (torch.ones(2),), remember_failure=True)
    assert _entries(cache) == 0


def test_a_module_of_many_weights_is_traced_without_hashing_them(cache, monkeypatch):
    """Past `TRACE_KEY_FROM` bytes of weights the key (every weight hashed, twice) would cost more than the trace:
    no key is made and nothing is kept; the trace is the fresh one."""
    from cp_debug.export import cache as export_cache
    from cp_debug.probes import trace_cache

    net, example = models.build_twice()
    hashed = []
    monkeypatch.setattr(export_cache, "export_key", lambda *a, **k: hashed.append(1) or "k")
    monkeypatch.setattr(trace_cache, "TRACE_KEY_FROM", sum(p.numel() * 4 for p in net.parameters()))
    assert traced(net, example) == trace_module(net, example)
    assert not hashed and _entries(cache) == 0
    monkeypatch.setattr(trace_cache, "TRACE_KEY_FROM", 1 << 40)
    traced(net, example)
    assert hashed and _entries(cache) == 1


def test_a_held_key_hashes_the_module_once_across_hits_and_gives_the_same_keys(cache, monkeypatch):
    """`HeldKey` (sized_shapes' tries at several sizes): the key is the one made without it, the module's part
    hashed once while every try is a hit; the trace the cached one."""
    from cp_debug.export import cache as export_cache
    from cp_debug.probes import trace_cache
    from cp_debug.probes.trace_cache import HeldKey

    net, _ = _resnet_like()
    inputs = [(torch.randn(1, 3, s, s),) for s in (20, 28, 36)]
    fresh = [traced(net, x) for x in inputs]  # stored, no HeldKey
    starts = []
    real = export_cache.key_start
    monkeypatch.setattr(export_cache, "key_start", lambda *a, **k: starts.append(1) or real(*a, **k))
    held = HeldKey()
    for x, want in zip(inputs, fresh):
        assert trace_cache._key(net, x, "", None, held) == trace_cache._key(net, x, "", None)
        _same(want, traced(net, x, held=held))
    assert starts.count(1) == 1 + len(inputs)  # once held, once for each unheld key above


def test_a_held_key_is_dropped_when_a_pass_runs(cache):
    """A miss runs the forward pass, which may move the module (an observer's buffer): the next key is made from
    the module as it is now, never from the part hashed before."""
    from cp_debug.probes import trace_cache
    from cp_debug.probes.trace_cache import HeldKey

    class Grows(nn.Module):  # its pass moves a buffer (and the module's key) on the first call only
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 4)
            self.register_buffer("calls", torch.zeros(()))

        def forward(self, x):
            if self.calls.item() == 0:
                self.calls.add_(1)
            return self.lin(x)

    net, held = Grows().eval(), HeldKey()
    first, second = (torch.randn(2, 4),), (torch.randn(3, 4),)
    before = trace_cache._key(net, first, "", None, held)
    traced(net, first, held=held)  # a miss: the pass moves `calls`, nothing stored
    assert held.start is None and _entries(cache) == 0
    assert trace_cache._key(net, first, "", None) != before  # the module is another now
    assert trace_cache._key(net, second, "", None, held) == trace_cache._key(net, second, "", None)
