"""The outputs README.md and docs/ show are what the commands print (issue 117, item 1): benchmarks/docs_check.py
reads every `$ cpdebug …` block, runs it and checks each shown line appears. Here: every block is well-formed and
its command parses, the matcher is strict where it must be (names, markers, verdicts, integers) and loose where a
CPU rounds otherwise, and the cheapest block — the README's own-model run — really matches a run of this checkout.
The whole check (the demo's runs, minutes) runs in .ci/run."""

from __future__ import annotations

import importlib.util
import shlex
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _docs_check():
    spec = importlib.util.spec_from_file_location("docs_check", ROOT / "benchmarks" / "docs_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("docs_check", module)
    spec.loader.exec_module(module)
    return module


dc = _docs_check()

REAL = """\
ort-cpu-fp16 vs torch
                                                                        local
  #  probe                                 max abs  rel RMSE  SNR dB  max abs   ampl.  status
 ───────────────────────────────────────────────────────────────────────────────────────────────────────
  0    pts_voxel_encoder.pfn_layers.0       0.0108   3.59e-4    68.9   0.0108       —  diverged  ◀ first
  1    pts_voxel_encoder.pfn_layers.1       0.0161   6.81e-4    63.3  0.00946    ×1.9  diverged
 15    › pts_bbox_head.task_heads.0.rot.1   0.0337   0.00614    44.2  0.00277   ×1.85  diverged  ★ root
  ★ root cause: pts_bbox_head.task_heads.0.rot.1 — FP16 rounding introduced by this layer (local rel. error
│              detections: 100 of 100 reference boxes matched, 0 lost, 0 added; max centre shift 0.00141 m,  │
""".splitlines()


def test_every_shown_output_in_the_docs_is_well_formed_and_its_command_parses():
    import typer

    from cp_debug.cli.main import app

    group = typer.main.get_command(app)
    blocks = dc.all_blocks()  # raises naming the line of a malformed block or marker
    readme = [b for b in blocks if b.page.name == "README.md"]
    assert len(readme) >= 2 and any("--atol 1e-3" in b.command for b in readme)
    for block in blocks:
        argv = shlex.split(block.command)
        assert argv[1] in group.commands, block.where
        group.commands[argv[1]].make_context(argv[1], argv[2:])
        assert [line for line in block.shown if line.strip() and line.strip() != "…"], f"{block.where} shows nothing"
        assert "skip" in block.markers or "exit" in block.markers, f"{block.where}: say the exit code (exit=N)"
    assert "benchmarks/docs_check.py" in (ROOT / ".ci" / "run").read_text()


@pytest.mark.parametrize("shown, matches", [
    ("0    pts_voxel_encoder.pfn_layers.0  0.0108  3.59e-4  68.9  0.0108  —  diverged  ◀ first", True),
    ("0 pts_voxel_encoder.pfn_layers.0 0.0121 3.3e-4 70.1 0.0117 — diverged ◀ first", True),  # another CPU
    ("0 pts_voxel_encoder.pfn_layers.0 0.0108 3.59e-4 68.9 0.0108 — ok ◀ first", False),  # the status is exact
    ("0 pts_voxel_encoder.pfn_layers.0 0.0108 3.59e-4 68.9 0.0108 — diverged ★ root", False),  # the marker too
    ("0 pts_voxel_encoder.pfn_layers.1 0.0108 3.59e-4 68.9 0.0108 — diverged ◀ first", False),  # and the name
    ("0 pts_voxel_encoder.pfn_layers.0 0.02 3.59e-4 68.9 0.0108 — diverged ◀ first", False),  # 2× is no rounding
    ("1 pts_voxel_encoder.pfn_layers.0 0.0108 3.59e-4 68.9 0.0108 — diverged ◀ first", False),  # a row is exact
    ("★ root cause: pts_bbox_head.task_heads.0.rot.1 — FP16 rounding …", True),  # `…` in a line: elided text
    ("★ root cause: pts_bbox_head.task_heads.0.rot.0 — FP16 rounding …", False),
    ("│ detections: 100 of 100 reference boxes matched, 0 lost, 0 added; max centre shift 0.0015 m, │", True),
    ("│ detections: 99 of 100 reference boxes matched, 0 lost, 0 added; max centre shift 0.00141 m, │", False),
    ("─────", True),  # a rule of any length
])
def test_a_shown_line_matches_by_its_words_and_its_numbers_loosely(shown, matches):
    assert (not dc.match([shown], REAL)[1]) is matches


def test_shown_lines_come_in_order_and_an_elided_line_stands_for_any():
    first, root = REAL[4], REAL[6]
    assert dc.match([first, "…", root], REAL)[1] == []
    assert dc.match([root, first], REAL)[1] == [first]
    stale = dc.Block(ROOT / "README.md", 1, 3, "cpdebug bisect", [first, root], {"exit": "0"})
    assert dc.check(stale, dc.Run(1, REAL)) == ["exit 1, the block says 0"]
    # --update keeps the author's trim where it matches, with the real numbers
    trimmed = dc.Block(ROOT / "README.md", 1, 3, "cpdebug bisect", ["…", first.replace("0.0108", "0.011")])
    assert dc.updated(trimmed, dc.Run(0, REAL)) == ["…", first]
    # a stale block gets the whole output, its timed progress lines one `…`
    progress = ["✓ loading the model (2.3 s)", "✓ exporting pts_voxel_encoder to ONNX (1.3 s)"]
    assert dc.updated(stale, dc.Run(1, progress + REAL[:2])) == ["…", *REAL[:2]]


def test_prose_wrapped_at_another_width_still_matches_word_for_word():
    """A hint wrapped elsewhere (another terminal width, a number one digit longer on another CPU) is the same text:
    its words are found in order across the real lines; a box's lines and other words are not."""
    real = ["  ★ root cause: c1 — FP16 rounding (local rel. error", "0.00075); keep it in FP32; this own error is 1.9×",
            "the median of the run's 16 other segments'", "│ box │"]
    shown = ["  ★ root cause: c1 — FP16 rounding (local rel. error", "0.00075); keep it in FP32; this own error",
             "is 1.9× the median of the run's 16 other segments'"]
    assert dc.match(shown, real) == ([0, 1, 2], [])
    assert dc.match(["is 1.9× the median of the run's 17 other segments'"], real)[1]  # an integer is exact
    assert dc.match(["│ box │ more"], real)[1]


def test_a_malformed_block_is_named_with_its_line(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("text\n<!-- docs-check: exit=0 -->\nno fence\n")
    with pytest.raises(ValueError, match="page.md:2"):
        dc.blocks(page)
    page.write_text("<!-- docs-check: skip= -->\n```\n$ cpdebug bisect\n```\n")
    with pytest.raises(ValueError, match="its reason"):
        dc.blocks(page)
    page.write_text("<!-- docs-check: exit=0 file=net.py -->\n```\n$ cpdebug bisect\n```\n")
    with pytest.raises(ValueError, match="file= names a file"):
        dc.blocks(page)


@pytest.mark.slow  # one cpdebug process, its export cached by the session: about 8 CPU s
def test_the_readmes_own_model_run_is_what_cpdebug_prints():
    """The cheapest block (a 3-layer net: ~8 CPU s), run as docs_check runs it: the README's my_model.py written into
    an empty folder, this checkout's cpdebug, COLUMNS=110."""
    block = next(b for b in dc.blocks(ROOT / "README.md") if "my_model.py:build" in b.command)
    assert block.files["my_model.py"].startswith("# my_model.py\nimport torch")
    assert dc.check(block, dc.run(block)) == []
