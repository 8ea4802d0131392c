"""What the intervention found (`findings/intervention.confirm` runs it, `settle` brings it to the verdict's root):
the probe it confirmed, or the set that brings the outputs back together, the error before, each run it made, and
how that is said — the words that close the root cause's hint (`text`: confirmed, placed by a run alone, at a
decision, a near tie several layers tip, the halves' evidence) and its JSON (`to_json`)."""

from __future__ import annotations

from dataclasses import dataclass

from cp_debug.bisect.cures import decision_layer, spread, tie_words
from cp_debug.bisect.cures.restore import CONSTANT, EXCLUDE, KEEP, KEPT_FLOAT, OutputError, cure_words
from cp_debug.bisect.cures.set_search import SET_RUNS, Tried, members_words, sets_words


@dataclass(frozen=True)
class Intervention:
    """The outcome of the restorations: the probe confirmed (None: no candidate alone brings the outputs back), the
    set that does where one is needed, the error before, each run, and the seconds they took."""

    proposed: str
    confirmed: str | None
    before: OutputError
    tried: tuple[Tried, ...]
    seconds: float
    stage: int
    at: str | None = None  # the root the verdict names, where `settle` brought the intervention to it
    chosen: tuple[str, ...] = ()  # the 1-minimal set of ranked candidates that brings the outputs back together
    searched: int = 0  # how many ranked candidates that set was searched among
    breaks: str | None = None  # where nothing brings them back: the ranked candidate that alone breaks them (`_breaks`)
    spent: bool = False  # the set search's runs spent before every drop was tried: `chosen` not proven 1-minimal
    tie: str | None = None  # the decision flip the verdict's reason names (`Finding.tie`, set by `settle`)
    near: str | None = None  # nothing confirmed, the metric moved: the ranking's first is the root, proposed only
    # (`confirmed`), and the outputs read at 0.5 / argmax that flip with the metric (their margin), where any
    metric: str = ""  # the decision in words (`decision_layer.decision`: `--metric NAME`, or the outputs read at
    # 0.5 / argmax), where `decided`
    decided: Tried | None = None  # nothing back within budget: the one that alone brings a declared decision back
    # with the most of the error gone (`decision_layer.at_decision`)

    @property
    def cure(self) -> Tried | None:
        """The run that brought the outputs back (the confirmed candidate's, else the set the search chose, else the
        first)."""
        back = [t for t in self.tried if t.after.back and not (t.hides or t.whole or t.spread or t.restored[0].alone)]
        mine = [t for t in back if len(t.restored) == 1 and t.restored[0].probe == self.confirmed]
        chosen = [t for t in back if self.chosen and {x.probe for x in t.restored} == set(self.chosen)]
        return (mine or chosen or back or [self.decided])[0]

    @property
    def confirmed_set(self) -> tuple[str, ...]:
        c = self.cure
        return tuple(x.probe for x in c.restored) if c is not None and len(c.restored) > 1 else ()

    def keep(self) -> tuple[str, ...]:
        """The nodes the cure keeps in FP32 or leaves out of INT8 (the advice, verified at the output)."""
        c = self.cure
        return tuple(n for x in c.restored if x.how in (KEEP, EXCLUDE) for n in x.nodes) if c is not None else ()

    def text(self) -> str:
        c = self.cure
        before = f"{self.before.ratio:.3g}× its budget"
        sets = [t for t in self.tried if len(t.restored) > 1]
        # judged by --atol/--rtol (fixed mode) an output fails within its precision's budget: say which limit holds
        budget = self.before.ratio >= 1 or self.before.flips > 0
        limit = "their budget" if budget else "the run's tolerance"
        flipped_only = self.before.flips > 0 and self.before.ratio < 1  # within budget: a decision is what is off
        back = "the decisions back" if flipped_only else f"the outputs back within {limit}"
        tried = "; ".join([f"{t.restored[0].words()}: {t.after.short(budget)}" for t in self.tried
                           if len(t.restored) == 1 and not t.spread]
                          + ([sets_words(self.tried, self.searched)] if sets and not self.chosen else []))
        if c is None:  # the root a run alone placed (it alone breaks them): no "no intervention", no accumulation
            placed = self.placed_alone
            head = "placed by its run alone, confirmed by no restoration" if placed else "confirmed by no intervention"
            return (f"{head}: restoring each of the proposed causes leaves "
                    f"{'a decision flipped' if flipped_only else tie_words.held(self, limit)} (worst output "
                    f"{before}; {tried}){self._alone()}"
                    f"{spread.words(self.tried, budget, self.tie, beside=placed)}"
                    f"{tie_words.near(self)}")
        if self.decided is not None and c is self.decided:
            return decision_layer.words(self, self.metric, tried)
        if self.tipped() and not self.confirmed_set:
            return tie_words.tipped_text(self, tried)
        what = ("the set " + ", ".join(self.confirmed_set)) if self.confirmed_set else self.confirmed
        how = c.restored[0].how_words()  # in the candidate's own precision: left out of INT8 / FP8 / NVFP4
        # a keep set with its nodes' count; a constant; a file's pairs kept float
        if c.restored[0].source or c.restored[0].how in (CONSTANT, KEPT_FLOAT):
            what, how = c.restored[0].words(), ""
        flips = f", {self.before.flips} decision(s) flipped before" if self.before.flips else ""
        if self.chosen and self.confirmed_set:  # no one alone: the 1-minimal set of the ranked, said as the root
            spent = (f"; the budget of {SET_RUNS} run(s) spent before each one was dropped: not proven 1-minimal"
                     if self.spent else "")
            return (f"confirmed by intervention: restored together: {', '.join(self.confirmed_set)} — no one of them "
                    f"alone does ({len(self.keep())} node(s) {how}) — bring {back} (worst "
                    f"output {before}{flips} → {c.after.ratio:.3g}×; tried {tried}; the set searched among the first "
                    f"{self.searched} ranked, added in rank order until they came back, then each one dropped whose "
                    f"removal still brings them back: {len(sets)} run(s){members_words(self.tried)}{spent}); verified "
                    f"at the outputs: {cure_words(c.restored)}{self._which()}")
        return (f"confirmed by intervention: {what}{' ' + how if how else ''} brings {back} "
                f"(worst output {before}{flips} → {c.after.ratio:.3g}×; tried {tried})"
                f"{spread.found_beside(self.tried, c)}{self._which()}{tie_words.one_tie(self)}")

    def _alone(self) -> str:
        """Where nothing brings the outputs back: the first ranked layer that alone, in its precision, breaks them."""
        t = next((t for t in self.tried if t.restored[0].alone and t.restored[0].probe == self.breaks), None)
        if t is None:
            return ""
        flips = f", {t.after.flips} decision(s) flipped" if t.after.flips else ""
        first = next((x for x in self.tried if x.restored[0].alone and x.after.flips), t)
        which = "the first ranked layer that alone breaks them" if first is t else (
            f"of the ranked layers that alone break them, the one with the most of the candidate's "
            f"{self.before.ratio:.3g}× (the first ranked that flips one, {first.restored[0].probe}, alone: "
            f"{first.after.ratio:.3g}×)")
        return (f"; {t.restored[0].words()} breaks them alone: {t.after.ratio:.3g}× their budget{flips} — {which}, "
                "with others beside it (no one restored alone brings them back)")

    @property
    def placed_alone(self) -> bool:
        """The verdict's root is the layer that alone breaks them (`_breaks`): that run placed it."""
        return self.breaks is not None and self.at == self.breaks

    def tipped(self) -> list[str]:
        return tie_words.tipped(self)

    def at_tie(self) -> bool:
        return tie_words.at_tie(self)

    def _which(self) -> str:
        """Where the confirmation names another module than the root the verdict settled on (`at`): which holds."""
        c, at = self.cure, self.at
        if c is None or at is None or any(x.probe == at for x in c.restored):
            return ""
        own = [t for t in self.tried if len(t.restored) == 1 and t.restored[0].probe == at and not t.restored[0].alone]
        what = ", ".join(x.probe for x in c.restored)  # the cure: one restoration, or a set restored together
        what = f"the set {what}" if len(c.restored) > 1 else what
        holder = next((x.probe for x in c.restored if at.startswith(f"{x.probe}.")), None)
        held = "" if holder is None else " (it holds the root cause)" if len(c.restored) == 1 else \
            f" ({holder} holds the root cause)"
        if not own:
            return (f"; the root cause {at} could not be restored alone (no node of its own in the graph): "
                    f"the outputs come back with {what} restored{held}")
        return (f"; the root cause {at} restored alone leaves the outputs at {own[-1].after.ratio:.3g}× their "
                f"budget: they come back only with {what} restored{held}")

    def to_json(self) -> dict:
        c = self.cure
        return {"proposed": self.proposed, "confirmed": self.confirmed is not None or bool(self.confirmed_set),
                "probe": self.confirmed, "set": list(self.confirmed_set), "keep": list(self.keep()),
                "how": c.restored[0].how if c is not None else None, "output_error": self.before.to_json(),
                "set_searched_among": self.searched, "set_runs_spent": self.spent, "alone_breaks": self.breaks,
                "proposed_only": self.near is not None, "at_decision": self.decided is not None,
                "tipped_by": self.tipped(), "also_back": tie_words.also_back(self),
                "tie": self.before.tie if self.tipped() else None,  # the near tie's margin those layers each tip
                "spread": spread.verdict(self.tried, self.tie, self.placed_alone),
                "tried": [t.to_json(self.before) for t in self.tried]}  # its time: the report's phases
