"""The screen's runs made ahead (issue 87, item 4: `bisect/stages/screen_ahead.py`): started on a helper thread as soon
as a
stage's feeds are known (by default for a CUDA candidate; here made so on the CPU), they find what the screen made
after the stage finds — the branch float16 cancels behind a residual (`collapse_models.cancelled`), named with the
same number, and the zeros of `collapsed`; nothing in `healthy` — in the same report; the runs are made on the
helper's thread."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from tests.cli_run import cpdebug

MODELS = Path(__file__).with_name("collapse_models.py")
_VARIES = ("seconds", "started", "finished", "elapsed", "environment", "wall", "peak")


def _bisect(tmp_path: Path, model: str, ahead: bool, monkeypatch) -> tuple[int, dict, list[str]]:
    from cp_debug.bisect.stages import screen, screen_ahead

    threads, real = [], screen._screen_run

    def noting(*args, **kwargs):
        threads.append(threading.current_thread().name)
        return real(*args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(screen, "_screen_run", noting)
        m.setattr(screen_ahead, "screens_ahead", lambda run, state: ahead)
        out = tmp_path / f"{model}-{ahead}.json"
        proc = cpdebug("bisect", "--torch", f"{MODELS}:{model}", "-b", "torch,ort-cpu-fp16", "--json", out,
                       "--quiet")
    return proc.returncode, json.loads(out.read_text()), threads


def _plain(doc):
    if isinstance(doc, dict):
        return {k: _plain(v) for k, v in doc.items() if not any(w in k for w in _VARIES)}
    if isinstance(doc, list):
        return [_plain(v) for v in doc]
    return doc


@pytest.mark.parametrize("model,rc", [("cancelled", 1), ("collapsed", 1), ("healthy", 0)])
def test_the_screen_made_ahead_finds_what_it_finds_after_the_stage(tmp_path, monkeypatch, model, rc):
    rc_after, after, on_after = _bisect(tmp_path, model, False, monkeypatch)
    rc_ahead, ahead, on_ahead = _bisect(tmp_path, model, True, monkeypatch)
    assert rc_after == rc_ahead == rc, (after["outcome_reasons"], ahead["outcome_reasons"])
    assert ahead["root_cause"] == after["root_cause"] and ahead["warnings"] == after["warnings"]
    assert bool([w for w in ahead["warnings"] if "do not show" in w]) == bool(rc), ahead["warnings"]
    assert _plain(ahead["results"]) == _plain(after["results"]) and ahead["results"]
    # after the stage: the engine's thread (FP32's sketched run beside it); ahead: the helper's, both runs
    assert "MainThread" in on_after and not any(t.startswith("cpdebug-screen-ahead") for t in on_after), on_after
    assert on_ahead and "MainThread" not in on_ahead, on_ahead
    assert any(t.startswith("cpdebug-screen-ahead") for t in on_ahead), on_ahead


def test_a_candidate_past_the_screens_size_is_told_it_was_not_screened(tmp_path, monkeypatch):
    """Past `SCREEN_UP_TO` bytes of weights (lowered here, as tests/zoo/test_past_2gib.py lowers its thresholds) a
    within-precision candidate gets no screen, and the report says so, once; a model under it gets no such line
    (the test above)."""
    from cp_debug.bisect.stages import screen

    monkeypatch.setattr(screen, "SCREEN_UP_TO", 16)
    out = tmp_path / "r.json"
    proc = cpdebug("bisect", "--torch", f"{MODELS}:healthy", "-b", "torch,ort-cpu-fp16", "--json", out, "--quiet")
    report = json.loads(out.read_text())
    assert proc.returncode == 0, report["outcome_reasons"]
    said = [w for w in report["warnings"] if "no screen for faults the outputs hide" in w]
    assert len(said) == 1 and "past 0 MiB of weights on cpu" in said[0], report["warnings"]
