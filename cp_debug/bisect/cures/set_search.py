"""The intervention's set search (`findings/intervention.py`, issue 115, item 1): where no ranked candidate restored
alone brings the outputs back, the smallest set of the first `SET_FROM` ranked that does — keep-fp32's 1-minimal
search, each run at the outputs, at most `SET_RUNS` runs — and, where it ends at a set of 2 or 3, each member not yet
run alone run alone (`MEMBERS_ALONE`): a member that alone brings them back is the smallest cure and named alone, not
the set. The drops of a set of 3 run its pairs and one member, not the others; effects that are not monotone (two
layers whose rounding cancels: one left out of INT8 leaves the other's whole) make a set of 3 pass and its pairs fail
while one member alone passes (`tests/bisect/int8_set_member.py`), and a search whose runs are spent proves nothing
of its set. Each such run is one run of the stage, said in the run count ("then each member alone: N run(s)")."""

from __future__ import annotations

from dataclasses import dataclass

from cp_debug.bisect.cures.restore import OutputError, Restoration

# the ranked a set is searched among; a set search's runs at most; the largest set whose members are each run alone
SET_FROM, SET_RUNS, MEMBERS_ALONE = 6, 12, 3


@dataclass(frozen=True)
class Tried:
    """One restoration run: what was restored, and the outputs' error after it."""

    restored: tuple[Restoration, ...]
    after: OutputError
    hides: bool = False  # a tensor after the proposal replaced: back, but by hiding what flowed into it
    whole: bool = False  # a set restoring every compute node: back, by not converting the model (`_whole`)
    spread: bool = False  # half the graph restored together: evidence only (`cures/spread.py`)
    member: bool = False  # a member of the set the search ended at, run alone after it (`smallest_set`)
    beside: str = ""  # a member of a half not back, run alone after the halves (`spread.beside`): that half

    def to_json(self, before: OutputError) -> dict:
        r = self.restored
        return {"candidate": r[0].probe if len(r) == 1 else [x.probe for x in r],
                "how": sorted({x.how for x in r}), "nodes": [n for x in r for n in x.nodes],
                "tensors": [x.tensor for x in r if x.tensor], "output_error_before": before.to_json(),
                "output_error_after": self.after.to_json(), "hides_upstream": self.hides, "whole": self.whole,
                "back": self.after.back and not (self.hides or self.whole or self.spread or r[0].alone),
                "alone": r[0].alone,  # alone: its nodes alone in the candidate's precision, every other restored
                "member_alone": self.member, **({"beside": self.beside} if self.beside else {})}


def smallest_set(pool: list[Restoration], tried: list[Tried], measure) -> tuple[tuple[str, ...], bool]:
    """The smallest set of `pool` (the ranked restorations, most first) whose restoration together brings the
    outputs back, by `keep-fp32`'s search (`cures/search.KeepFp32Search`): added in rank order until they come back
    (a binary search over the prefixes), then each one dropped whose removal still brings them back (ddmin: the set
    ends 1-minimal). Every run is appended to `tried`; at most `SET_RUNS` runs (a set not yet run past them counts as
    not back: the set found passed, its 1-minimality then unproven: said, `spent`). () where even all of `pool` do
    not; one member where the drops end at one (a candidate ranked past those run alone before, that alone brings
    them back: PESTO's INT8 by ONNX Runtime's defaults, its confidence conv) or where the set it ends at holds
    `MEMBERS_ALONE` or fewer and one of them, run alone, brings them back (the best of those: the smallest cure)."""
    from cp_debug.bisect.cures.search import KeepFp32Search, run_search

    if len(pool) < 2:
        return (), False
    by = {r.probe: r for r in pool}
    seen = {frozenset(x.probe for x in t.restored): t for t in tried if set(t.restored) <= set(pool)}
    runs = [0]

    def bad(names: list[str]) -> bool:
        key = frozenset(names)
        if not key:
            return True  # nothing restored: the outputs as the candidate left them, off
        if key not in seen:
            if runs[0] >= SET_RUNS:
                return True
            runs[0] += 1
            group = tuple(by[n] for n in names)
            tried.append(Tried(group, measure(list(group))))
            seen[key] = tried[-1]
        return not seen[key].after.back

    trace = run_search(KeepFp32Search([r.probe for r in pool]), bad)
    found = tuple(trace.result) if trace.status == "found" and trace.result else ()
    if 2 <= len(found) <= MEMBERS_ALONE:  # each member alone: the drops never ran some of them
        for name in found:
            if frozenset([name]) not in seen:
                tried.append(Tried((by[name],), measure([by[name]]), member=True))
                seen[frozenset([name])] = tried[-1]
        alone = [seen[frozenset([n])] for n in found if seen[frozenset([n])].after.back]
        if alone:
            return (min(alone, key=lambda t: t.after.ratio).restored[0].probe,), False
        # a set of 2 whose members each fail alone is 1-minimal, whatever the search's runs left unproven
        return found, len(found) > 2 and runs[0] >= SET_RUNS
    return found, len(found) > 1 and runs[0] >= SET_RUNS


def searched(tried: list[Tried]) -> int:
    """How many ranked candidates the set search drew from (0: none searched)."""
    sets = [t for t in tried if len(t.restored) > 1]
    return len({x.probe for t in sets for x in t.restored}) if sets else 0


def members_words(tried) -> str:
    """The runs of the set's members alone after the search (`Tried.member`), said with their count."""
    members = [t for t in tried if t.member]
    return f", then each member not yet run alone run alone: {len(members)} run(s)" if members else ""


def sets_words(tried, searched_among: int) -> str:
    """A set search that chose none (or ended at a member alone): its runs, and its best among the sets that convert
    the model (`Tried.whole`: not)."""
    sets = [t for t in tried if len(t.restored) > 1]
    part, whole = [t for t in sets if not t.whole], sum(t.whole for t in sets)
    return (f"sets of the first {searched_among} ranked: {len(sets)} run(s)"
            + (f", the best {min(t.after.ratio for t in part):.3g}×" if part else "")
            + (f" ({whole} of them every compute node restored: the model unconverted, no cure)" if whole else "")
            + members_words(tried))
