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
