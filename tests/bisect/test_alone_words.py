"""One story where a layer's run alone places the root (issue 115: openwakeword's built-in INT8): nothing restored
brings the wake word back, and the first Conv alone in INT8 breaks it with the most of the candidate's error — the
root. Its hint said "confirmed by no intervention" and, beside the layer it named, the own-error words "no single
layer dominates … the error accumulates across the network" and the halves' "no single layer: the error
accumulates". Now: "placed by its run alone, confirmed by no restoration", the halves said as the others' error
beside it (the JSON's `spread.accumulates` false). Where the verdict's root is another (a finding placed it) the
words stay as they were.
The intervention's words from its own runs, as `intervention.py` records them (the runs themselves are the real ones
of tests/trained/test_wake_word.py, long)."""

from __future__ import annotations

from cp_debug.bisect.cures.restore import EXCLUDE, OutputError, Restoration
from cp_debug.bisect.cures.set_search import Tried
from cp_debug.bisect.cures.intervened import Intervention


def _err(ratio: float, flips: int) -> OutputError:
    return OutputError(ratio=ratio, rel_rmse=ratio * 0.05, passes=False, flips=flips)


def _found(at: str) -> Intervention:
    def one(probe: str, ratio: float, flips: int, alone: bool = False) -> Tried:
        return Tried((Restoration(probe, 0, EXCLUDE, (f"{probe}_node",), alone=alone),), _err(ratio, flips))

    halves = [Tried((Restoration(name, 0, EXCLUDE, ("a", "b")),), _err(0.5, 1), spread=True)
              for name in ("the graph's first half", "the graph's second half")]
    tried = (one("bn16", 0.76, 1), one("conv1", 0.47, 1), one("bn16", 0.145, 1, alone=True),
             one("conv1", 0.495, 1, alone=True), *halves)
    return Intervention(proposed="bn16", confirmed=None, before=_err(0.806, 1), tried=tried, seconds=1.0, stage=0,
                        at=at, breaks="conv1")


def test_the_root_its_run_alone_placed_is_one_story():
    text = _found(at="conv1").text()
    assert text.startswith("placed by its run alone, confirmed by no restoration: restoring each"), text
    assert "conv1 alone in INT8 (every other node left out of INT8) breaks them alone: 0.495×" in text, text
    assert "(the first ranked that flips one, bn16, alone: 0.145×)" in text, text
    assert "accumulates" not in text and "confirmed by no intervention" not in text, text
    assert "beside it, the others' error: no half of the graph restored together brings them back" in text, text
    assert _found(at="conv1").to_json()["spread"] == {"accumulates": False, "tie": None, "within": []}


def test_a_root_placed_elsewhere_keeps_its_words():
    text = _found(at="h0").text()
    assert text.startswith("confirmed by no intervention: restoring each"), text
    assert "no single layer: the error accumulates" in text, text
    assert _found(at="h0").to_json()["spread"]["accumulates"] is True
