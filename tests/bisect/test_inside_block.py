"""Issue 115, item 1: the root named inside the block the graph's halves bring back, where the own-error ranking's
first is no fault of its own (`cures/spread.inside`). The rule's two sides, each as the intervention's runs of a real
model left it (the figures in the docstrings; the long runs: tests/trained/test_captcha.py, and
tests/zoo/test_rtdetr_near_tie.py with the stored corpus's basic-pitch one story for the side that keeps its place):

- captcha-whisperer's CRNN in cp_debug's INT8: the first ranked, an LSTM Add at 0.16× its budget, restored moves the
  outputs 0.189× → 0.188× with the text still moved; the graph's first half and then its first 156 nodes (the trunk)
  bring every text back → the first ranked whose nodes lie in that block is the root;
- basic-pitch's INT8 file: the first ranked, `Neg_6` at 5.8× its budget, restored changes nothing (1.39× → 1.39×)
  and lies outside the 23-node block its halves found → it keeps its place (its own error is a fault of its own:
  the built-in's halves end at another block, and the own error names one root for both)."""

from __future__ import annotations

from cp_debug.bisect.cures import spread
from cp_debug.bisect.cures.restore import EXCLUDE, OutputError, Restoration
from cp_debug.bisect.cures.set_search import Tried

BEFORE = OutputError(ratio=0.189, rel_rmse=0.0418, passes=True, flips=1)


def _runs(block: tuple[str, ...], rest: tuple[str, ...], first: str) -> tuple[list[Tried], dict]:
    """The intervention's runs: `first` restored alone (nothing changes), the halves: `block` back, `rest` not."""
    own = {name: Restoration(name, 0, EXCLUDE, nodes=(name,)) for name in (*block, *rest)}
    still = OutputError(ratio=0.188, rel_rmse=0.0417, passes=True, flips=1)
    back = OutputError(ratio=0.103, rel_rmse=0.0229, passes=True, flips=0)
    tried = [Tried((own[first],), still),
             Tried((Restoration(spread.HALVES[0], 0, EXCLUDE, nodes=block),), back, spread=True),
             Tried((Restoration(spread.HALVES[1], 0, EXCLUDE, nodes=rest),), still, spread=True)]
    return tried, own


def test_a_first_ranked_within_its_budget_gives_way_to_the_first_ranked_inside_the_block_brought_back():
    trunk, lstm = ("/conv1/Conv", "/Mul_18", "/Add_18"), ("/lstm_bwd/cell_1/Add", "/lstm_fwd/cell_18/Add")
    tried, own = _runs(trunk, lstm, lstm[0])
    ranked = [lstm[0], "/Mul_18", lstm[1], "/conv1/Conv"]
    assert spread.inside(tried, ranked, own.get, lambda p: False) == "/Mul_18"


def test_a_first_ranked_beyond_its_budget_keeps_its_place():
    front, back = ("conv1d_1", "Neg", "conv1d"), ("Neg_6", "conv1d_18")
    tried, own = _runs(front, back, back[0])
    ranked = ["Neg_6", "conv1d_18", "Neg", "conv1d"]
    assert spread.inside(tried, ranked, own.get, lambda p: p in ("Neg_6", "conv1d_18")) is None
    # the same runs with the first ranked no fault of its own: named inside the block, as captcha's
    assert spread.inside(tried, ranked, own.get, lambda p: False) == "Neg"


def test_no_block_brought_back_no_move():
    front, back = ("a", "b"), ("c", "d")
    tried, own = _runs(front, back, "c")
    tried[1] = Tried(tried[1].restored, tried[2].after, spread=True)  # neither half back: the error accumulates
    assert spread.inside(tried, ["c", "a"], own.get, lambda p: False) is None
