"""torchlib's op list and the exporter's registry made once a process (`export/torchlib_ops.py`): the dynamo
exporter's graphs are the same with the memos as without them, the memos make their results again when torchlib's
registry changes, and each export's registry is its own."""

from __future__ import annotations

import sys

import pytest
import torch

from cp_debug.export import torchlib_ops
from cp_debug.export.torch_export import export_module

pytestmark = pytest.mark.needs("onnxscript")


class _Small(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(6, 4)
        self.norm = torch.nn.LayerNorm(4)

    def forward(self, x):
        return torch.softmax(self.norm(self.fc(x)), dim=-1)


def _apis():
    from torch.onnx._internal.exporter import _registration

    return sys.modules[_registration.onnxscript_apis.__name__]


def test_the_graph_is_the_same_with_the_memo_as_without_it(monkeypatch):
    torch.manual_seed(0)
    module, x = _Small().eval(), torch.randn(2, 6)
    first = export_module(module, (x,), ["x"], ["y"], exporter="dynamo")
    assert first.exporter == "dynamo"
    memo = _apis().get_torchlib_ops
    assert getattr(memo, "cpdebug_once", False), "the dynamo export put no memo in front of get_torchlib_ops"
    again = export_module(module, (x,), ["x"], ["y"], exporter="dynamo")
    from torch.onnx._internal.exporter._registration import ONNXRegistry

    registry_memo = ONNXRegistry.__dict__["from_torchlib"].__func__
    assert getattr(registry_memo, "cpdebug_once", False), "no memo in front of ONNXRegistry.from_torchlib"
    monkeypatch.setattr(_apis(), "get_torchlib_ops", memo.__wrapped__)  # onnxscript's own, as torch calls it
    monkeypatch.setattr(ONNXRegistry, "from_torchlib", classmethod(registry_memo.__wrapped__))
    monkeypatch.setattr(torchlib_ops, "torchlib_ops_once", lambda: False)
    monkeypatch.setattr("cp_debug.export.torch_export.torchlib_ops_once", lambda: False)
    plain = export_module(module, (x,), ["x"], ["y"], exporter="dynamo")
    assert _apis().get_torchlib_ops is memo.__wrapped__
    blob = plain.model.SerializeToString()
    assert first.model.SerializeToString() == blob and again.model.SerializeToString() == blob
    # the memo's list is onnxscript's, entry for entry
    ours = [(m.qualified_name, m.function, m.domain) for m in memo()]
    theirs = [(m.qualified_name, m.function, m.domain) for m in memo.__wrapped__()]
    assert ours == theirs and len(ours) > 100


def test_the_list_is_made_once_and_again_when_the_registry_changes(monkeypatch):
    calls = []
    size = [10]
    monkeypatch.setattr(torchlib_ops, "_registry_size", lambda: size[0])
    once = torchlib_ops._once(lambda: calls.append(1) or ["a", "b"])
    assert once() == ["a", "b"] and once() == ["a", "b"] and len(calls) == 1
    got = once()
    got.append("c")  # a caller's list is its own
    assert once() == ["a", "b"]
    size[0] = 11  # an op registered since
    assert once() == ["a", "b"] and len(calls) == 2


def test_each_export_gets_a_registry_of_its_own_with_the_same_entries(monkeypatch):
    from torch.onnx._internal.exporter._registration import ONNXRegistry

    assert torchlib_ops.torchlib_ops_once()
    made = ONNXRegistry.__dict__["from_torchlib"].__func__.__wrapped__
    one, two = ONNXRegistry.from_torchlib(opset_version=18), ONNXRegistry.from_torchlib(opset_version=18)
    plain = made(ONNXRegistry, opset_version=18)
    assert one is not two and one.opset_version == plain.opset_version == 18
    assert {k: [(m.fx_target, m.onnx_function, m.signature) for m in v] for k, v in one.functions.items()} == \
        {k: [(m.fx_target, m.onnx_function, m.signature) for m in v] for k, v in plain.functions.items()}
    assert len(one.functions) > 100

    def custom(x):
        return x

    one.register_op(torch.ops.aten.relu.default, custom)  # a custom translation table's entry: that export's alone
    assert one.get_decomps(torch.ops.aten.relu.default)[0].onnx_function is custom
    assert all(m.onnx_function is not custom for m in two.get_decomps(torch.ops.aten.relu.default))
    again = ONNXRegistry.from_torchlib(opset_version=18)
    assert all(m.onnx_function is not custom for m in again.get_decomps(torch.ops.aten.relu.default))
    assert ONNXRegistry.from_torchlib(opset_version=20).opset_version == 20


def _entries(registry) -> dict:
    return {k: [(m.fx_target, m.onnx_function) for m in v] for k, v in registry.functions.items()}


def test_operators_torch_learns_after_the_first_registry_are_in_the_next_one(monkeypatch):
    """A library imported after the first export (torchvision: its operators exist from then on, and torchlib has
    entries for them) is in the next export's registry, as a registry made afresh has it."""
    from torch.onnx._internal.exporter._registration import ONNXRegistry

    built, ops = [], [frozenset({"aten::relu"})]
    monkeypatch.setattr(torchlib_ops, "_torch_ops", lambda: (ops[0], 1))
    once = torchlib_ops._registry_once(lambda cls, **kw: built.append(1) or ONNXRegistry())
    once(ONNXRegistry, opset_version=18)
    once(ONNXRegistry, opset_version=18)
    assert len(built) == 1
    ops[0] = ops[0] | {"torchvision::deform_conv2d"}  # a library's operators registered since
    once(ONNXRegistry, opset_version=18)
    assert len(built) == 2
    monkeypatch.undo()

    assert torchlib_ops.torchlib_ops_once()
    ONNXRegistry.from_torchlib(opset_version=18)  # remembered before torchvision is imported, where it is not yet
    import torchvision  # noqa: F401 - registers torchvision::* operators

    made = ONNXRegistry.__dict__["from_torchlib"].__func__.__wrapped__
    assert _entries(ONNXRegistry.from_torchlib(opset_version=18)) == _entries(made(ONNXRegistry, opset_version=18))
    assert any(str(k).startswith("torchvision::") for k in ONNXRegistry.from_torchlib(opset_version=18).functions)
