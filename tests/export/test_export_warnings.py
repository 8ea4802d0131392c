"""Exporter warnings as a report lists them: one line a message and file, the lines it came from with their counts."""

from __future__ import annotations

import torch

from cp_debug.export.torch_export import export_module, folded


class _Attention(torch.nn.Module):
    """Two multi-head attentions, each traced through torch's own functional code (its TracerWarnings come from a
    few lines of torch/nn/functional.py, once per call), and a branch of our own frozen at export time."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.MultiheadAttention(8, 2)
        self.b = torch.nn.MultiheadAttention(8, 2)

    def forward(self, x):
        if x.sum() > 0:  # frozen: a line of this file
            x = x * 2
        return self.b(self.a(x, x, x)[0], x, x)[0]


def test_the_same_warning_from_torch_s_attention_is_one_line_with_its_source_lines_and_counts():
    exported = export_module(_Attention().eval(), (torch.randn(4, 1, 8),), ["x"], ["y"])
    raw = [w for w in exported.warnings if w.category == "TracerWarning"]
    lines = folded(exported.warnings)
    assert len(lines) < len(raw)  # the two calls' warnings (and each line's repeats) fold together
    ours = [t for t in lines if "test_export_warnings.py:" in t]
    assert len(ours) == 1 and ours[0].startswith("TracerWarning: Converting a tensor to a Python boolean")
    assert not ours[0].rstrip(")").endswith(" ")  # the first sentence, not a cut one ("… will be treated as ")
    theirs = [t for t in lines if "functional.py:" in t]
    assert theirs and all(t.count("functional.py:") == 1 for t in theirs)
    counted = sum(int(c) if c else 1 for t in theirs for c in _counts(t))
    assert counted == sum(1 for w in raw if w.filename.endswith("functional.py"))  # every occurrence accounted for


def _counts(line: str) -> list[str]:
    where = line.rsplit("(functional.py:", 1)[1].rstrip(")")
    return [part.split(" ×")[1] if " ×" in part else "" for part in where.split(", ")]


class _Histogram(torch.nn.Module):
    """`torch.histc` over its own range (min == max == 0): neither ONNX exporter takes it."""

    def forward(self, x):
        return torch.histc(x, bins=4)


def test_both_exporters_reasons_are_said_in_the_one_line():
    """Where the torch.export path and the TorchScript exporter both fail, the line says each one's reason — the
    torch.export one read from the bottom of torch.onnx's chain, not its "This is step 3/3" header (before: the
    TorchScript reason alone) — a user's error (exit 2)."""
    import pytest

    from cp_debug.errors import BadInputError

    with pytest.raises(BadInputError) as got:
        export_module(_Histogram(), (torch.randn(16),), ["x"], ["y"])
    said = str(got.value)
    assert got.value.exit_code == 2 and "\n" not in said, said
    assert said.startswith("ONNX export failed with both exporters: torch.export: NotImplementedError: aten_histc"), \
        said
    assert "step 3/3" not in said and "; the TorchScript exporter: UnsupportedOperatorError: " in said, said
    assert "'aten::histc'" in said, said
    with pytest.raises(BadInputError, match="^ONNX export failed with the TorchScript exporter: .*'aten::histc'"):
        export_module(_Histogram(), (torch.randn(16),), ["x"], ["y"], exporter="torchscript")
