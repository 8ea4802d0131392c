"""The shape-range search told: its verdict line, and the terminal's table of each candidate's first failing and last
passing shapes; a sample sweep's samples grouped by shape (sweep.json's `by_shape`) as a table where a shape holds
more than one sample."""

from __future__ import annotations


def range_verdict(result) -> str:
    """Each candidate's answer in one clause (`session.RangeSweep`): where it first fails and what breaks there."""
    limited = getattr(result, "limit", None) is not None
    parts = [result.limit.line()] if limited else []
    for c in result.candidates:
        if c.status == "fails_at_min":
            parts.append(f"{c.label} fails already at the min shapes {c.first_failing_token}")
        elif c.status == "passes_at_max":
            parts.append(f"{c.label} passes up to " + ("the model's limit" if limited else "the max shapes"))
        else:
            last = ",".join(f"{n}={'x'.join(map(str, s))}" for n, s in c.last_passing.items())
            at = f" (first divergent {c.first_divergent})" if c.first_divergent else ""
            parts.append(f"{c.label} first fails at {c.first_failing_token}{at}, passes at {last}")
    return "; ".join(parts)


def print_range(doc: dict, console) -> None:
    """sweep.json's `shape_search` as a table: a row a candidate."""
    from rich.table import Table

    from cp_debug.report.table import print_whole
    from cp_debug.report.table import Notes

    search, notes = doc["shape_search"], Notes()
    axes = ", ".join(f"{a['name']} {a['min']}..{a['max']}" for a in search["axes"]) or "one shape"
    t = Table(title=f"shape range: {axes} ({search['runs']} shapes judged, {search['seconds']:.1f} s)")
    for h in ("candidate", "search", "first failing", "last passing", "first divergent", "root cause", "runs"):
        t.add_column(h)
    for label, c in search["candidates"].items():
        t.add_row(label, c["status"].replace("_", " "), _shapes(c["first_failing"]), _shapes(c["last_passing"]),
                  c["first_divergent"] or "", notes.cell(c["root_cause"]), str(c["runs"]))
    print_whole(console, t)
    notes.print(console)


def print_groups(doc: dict, console) -> None:
    """sweep.json's `by_shape` as a table, where some shape holds more than one sample (else the ranked table says
    it all)."""
    groups = doc.get("by_shape") or []
    if not any(len(g["samples"]) > 1 for g in groups):
        return
    from rich.table import Table

    from cp_debug.report.table import print_whole

    t = Table(title="by shape")
    for h in ("shape", "samples", "worst", "outcomes"):
        t.add_column(h)
    for g in groups:
        t.add_row(g["label"], str(len(g["samples"])), g["worst"].replace("_", " "),
                  ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in g["outcomes"].items()))
    print_whole(console, t)


def _shapes(shapes: dict | None) -> str:
    return ",".join(f"{n}={'x'.join(map(str, s))}" for n, s in shapes.items()) if shapes else ""
