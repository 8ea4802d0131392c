"""The words of an intervention (`cures/intervened.Intervention`, `found`) where a decision sits at a near tie
(issue 115): the layers tried that each bring it back alone (several: the rounding of any tips it, none its root —
fer's FP16 face at 0.251 / 0.250, 5 of its 43 nodes each); a cure that brings the outputs within their budget while
the decision still moves (fer's INT8 Pads left out: 0.442×, near-tie faces still moved); and, where nothing is
confirmed and only the metric moved, the ranking's first said as proposed, not confirmed (smart-turn's FP16)."""

from __future__ import annotations


def _alone(found) -> dict[str, bool]:
    """Each layer restored alone (no set, half, member alone or tensor that hides its upstream): brought them back."""
    return {t.restored[0].probe: t.after.back for t in found.tried if len(t.restored) == 1
            and not (t.hides or t.whole or t.spread or t.restored[0].alone)}


def at_tie(found) -> bool:
    """Only a decision moved (the outputs within their budget), at a margin read at 0.5 / argmax, and a layer
    restored alone brings it back: the decision sits at a near tie — no error that accumulates (one story)."""
    return bool(found.before.flips and found.before.ratio < 1 and found.before.tie and found.cure is not None
                and found.tie is None)  # a finding that places the flip (`Finding.tie`) tells its story: not twice


def also_back(found) -> list[str]:
    """Only a decision moved (the outputs within their budget) and no near tie read at 0.5 / argmax (a `--metric`'s
    own threshold): the other layers tried that each, restored alone, bring it back too, beside the confirmed one."""
    if not (found.before.flips and found.before.ratio < 1) or found.before.tie or found.confirmed_set:
        return []
    return [probe for probe, came in _alone(found).items() if came and probe != found.confirmed]


def one_tie(found) -> str:
    """`at_tie` where one layer brings it back: the tie said with how many of the layers tried did; a decision moved
    at a `--metric`'s threshold (no margin read) that other layers tried bring back alone too: those said (one story
    with `fix`, whose 1-minimal search over its own ranking may end at another of them: MTCNN's RNet in INT8, a crop at
    0.725 → 0.683 against its 0.7, `prelu2`, `conv3` … each left out alone bring it back, `fix` ends at `conv2`)."""
    also = also_back(found)
    if also:
        alone = _alone(found)
        return (f"; so do {', '.join(also)}, each alone ({len(also) + 1} of the {len(alone)} layers tried): the "
                f"decision moves by the error several layers build up together, any one of which restored brings it "
                f"back — the first ranked of them named, none the only one")
    if not at_tie(found) or found.confirmed_set:
        return ""
    alone = _alone(found)
    n = sum(alone.values())
    return (f"; the decision sits at a near tie ({found.before.tie}): {n} of the {len(alone)} layers tried "
            f"{'brings' if n == 1 else 'bring'} it back alone")


def tipped(found) -> list[str]:
    """Where the outputs were within their budget and a decision flipped at a near tie: the layers tried that each,
    restored alone, bring it back — where two or more do, the decision sits at a near tie the rounding of any of
    them tips (fer's FP16 row at 0.251 / 0.250: 5 of its 43 nodes each), none of them its root."""
    if not (found.before.flips and found.before.ratio < 1 and found.before.tie) or found.tie is not None:
        return []
    back = [probe for probe, came in _alone(found).items() if came]
    return back if len(back) > 1 else []


def tipped_text(found, tried: str) -> str:
    """`tipped`'s words: the near tie and the layers that each tip it, no root among them."""
    alone, tips = _alone(found), tipped(found)
    at = f" ({found.before.tie})" if found.before.tie else ""
    return (f"the decision sits at a near tie{at}: {len(tips)} of the {len(alone)} layers tried each bring it "
            f"back alone — {', '.join(tips)} ({found.cure.restored[0].how_words()}) —, so the rounding of any of "
            f"them tips it, none of them its root (worst output {found.before.ratio:.3g}× its budget, "
            f"{found.before.flips} decision(s) flipped before; tried {tried})")


def held(found, limit: str) -> str:
    """The outputs beyond their budget before: what the restorations leave — beyond it, or (one brings them
    within it) the decision still moved, at its near ties where outputs read at 0.5 / argmax flip (fer's INT8
    Pads left out: 0.442×, two near-tie faces still moved)."""
    best = min((t for t in found.tried if len(t.restored) == 1 and not (t.spread or t.hides or t.restored[0].alone)
                and t.after.passes and t.after.flips), key=lambda t: t.after.ratio, default=None)
    if best is None:
        return f"the outputs beyond {limit}"
    at = f", where {best.after.tie}" if best.after.tie else ""
    return (f"a decision moved: {best.restored[0].words()} brings the outputs back within {limit} "
            f"({best.after.ratio:.3g}×) and the decision still changes{at}")


def near(found) -> str:
    """Where nothing is confirmed and only the metric moved: the root named is the ranking's first, proposed."""
    if found.near is None:
        return ""
    at = f"; the decision moved at a near tie: {found.near}" if found.near else ""
    return f"; {found.proposed} (its own error ranked first) is proposed, not confirmed{at}"
