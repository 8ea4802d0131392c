"""sweep.json told in short: the terminal's ranked table with the verdict, and the JUnit suite (a case per frame)
that CI reads."""

from __future__ import annotations


def junit_suite(doc: dict, extra=()):
    """sweep.json's frames as one JUnit suite (`report.junit`): a case per frame, failed unless it is within
    precision (fixed mode: unless it diverges), its status the failure's type (`cpdebug.degraded`), its figures in
    the message; `extra`: the budget's cases. With a budget (sweep.json's `budget`), which decides the exit code, a
    frame fails only when it diverges or fails: a degraded frame is the budget's to judge."""
    from cp_debug.report.junit import TestCase, TestSuite

    passing = ("ok", "within_precision") + (("degraded",) if doc.get("budget") is not None else ())
    cases = []
    for f in doc["frames"]:
        state = f["status"]
        bad = state not in passing
        figures: dict = {"rank": f["rank"], "status": f["status"], "outcome": f.get("outcome"), "class": f["class"],
                         "worst_probe": f["worst_probe"], "worst_ratio_to_median": f["worst_ratio"],
                         "local_probe": f["local_probe"], "root_cause": f.get("root_cause")}
        for cand, d in (f["detections"] or {}).items():
            figures[f"{cand}.lost_added"] = f"{d['lost']}/{d['added']}"
            figures[f"{cand}.max_centre_shift_m"] = d["max_centre_shift"]
            v = (f["candidates"] or {}).get(cand) or {}
            figures[f"{cand}.worst_noise_ratio"] = v.get("worst_noise_ratio")
        figures = {k: v for k, v in figures.items() if v is not None}
        failure = None
        if bad:
            parts = [f"{f['token']}: {state.replace('_', ' ')}", f.get("outcome_reason") or f["reason"] or ""]
            if f["worst_probe"]:
                parts.append(f"worst probe {f['worst_probe']} ({cell(f['worst_ratio'])}× its median over frames)")
            if f["local_probe"]:
                parts.append(f"layer-local at {f['local_probe']}")
            parts += [f"{c}: {d['lost']} lost, {d['added']} added" for c, d in (f["detections"] or {}).items()
                      if d["lost"] or d["added"]]
            if f.get("root_cause") or f.get("near_tie"):
                named = (f"root cause {f['root_cause']}" if f.get("root_cause") else
                         f"no single root cause ({', '.join(f['near_tie'])} each tip a near tie alone)")
                parts.append(named + (f" ({f['hint']})" if f.get("hint") else ""))
            failure = "; ".join(p for p in parts if p)
        cases.append(TestCase(f["token"], f"cpdebug.sweep.{doc['reference']}", failure=failure,
                              properties=figures, failure_type=f"cpdebug.{state}"))
    props = {"reference": doc["reference"], "candidates": ",".join(doc["candidates"]), "outcome": doc["outcome"],
             "verdict": doc["verdict"], "tolerance_mode": doc.get("tolerance_mode")}
    return TestSuite("cpdebug.sweep", [*cases, *extra], {k: v for k, v in props.items() if v is not None})


def print_summary(doc: dict, console, top: int = 10) -> None:
    """The short ranked table and the verdict."""
    from rich.table import Table

    t = Table(title=f"sweep: {doc['reference']} vs {', '.join(doc['candidates'])}")
    for h in ("rank", "token", "outcome", "class", "candidate", "lost/added", "worst probe", "×median", "local probe",
              "root cause"):
        t.add_column(h)
    from cp_debug.report.table import Notes

    notes = Notes()
    for f in doc["frames"][:top]:
        d = (f["detections"] or {}).get(f["candidate"]) or {}
        t.add_row(str(f["rank"]), f["token"], f["status"].replace("_", " "), f["class"] or "", f["candidate"] or "",
                  f"{d.get('lost', '')}/{d.get('added', '')}" if d else "", f["worst_probe"] or "",
                  cell(f["worst_ratio"]), f["local_probe"] or "", notes.cell(f.get("root_cause") or f["reason"]))
    from cp_debug.report.table import print_whole

    print_whole(console, t)
    notes.print(console)
    from cp_debug.sweep.shape_range.report import print_groups, print_range

    print_groups(doc, console)
    if doc.get("shape_search"):
        print_range(doc, console)
    console.print(doc["verdict"])


def cell(v) -> str:
    """A table's or a message's figure: a float to 3 significant digits, None as nothing."""
    if isinstance(v, float):
        return f"{v:.3g}"
    return "" if v is None else str(v)
