"""The larger fuzz campaign (issue 33): damaged copies of every kind of input, through every command that reads them.

Builds the seeds (real files from `cpdebug export`, `scenes`, `bisect --json`, a sweep, rosbag2 folders, prediction
files, the shipped checkpoint and configs; tests/fuzz/mutations.py), then, round after round with the RNG seeded by
`--seed` + round, draws every mutation of every kind anew until `--cases` cases have run; a few runs go through a
fresh `python -m cp_debug.cli.main` as well. Prints how many cases and command runs it tried, how each ended
(count per exit code and per first line), and every traceback and broken rule (tests/fuzz/runner.py says which).
Exit 0 when nothing failed, 1 otherwise.

    PYTHONPATH=$PWD python benchmarks/fuzz_campaign.py [--cases 400] [--seed 0] [--kinds onnx,points] [--keep DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fuzz.mutations import KINDS, Seeds, all_cases  # noqa: E402
from tests.fuzz.runner import Runner, summary  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=400, help="cases to try (each runs every command that reads it)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated, of {', '.join(KINDS)}")
    ap.add_argument("--subprocess-every", type=int, default=25, help="every Nth case also through a fresh process")
    ap.add_argument("--timeout", type=int, default=300, help="seconds one command may take")
    ap.add_argument("--keep", type=Path, help="work in DIR and keep it (default: a temporary folder)")
    args = ap.parse_args()
    kinds = tuple(k for k in args.kinds.split(",") if k)
    unknown = set(kinds) - set(KINDS)
    if unknown:
        ap.error(f"unknown kinds {sorted(unknown)}; choose from {', '.join(KINDS)}")
    with tempfile.TemporaryDirectory(prefix="cpdebug-fuzz-") as tmp:
        root = args.keep or Path(tmp)
        return campaign(root, args.cases, args.seed, kinds, args.subprocess_every, args.timeout)


def campaign(root: Path, n_cases: int, seed: int, kinds, subprocess_every: int, timeout: int) -> int:
    t0 = time.perf_counter()
    runner = Runner(root / "runs", root / "seeds" / "CODE-WAS-EXECUTED", timeout_s=timeout)
    invoke = _invoker()
    seeds = Seeds.build(root / "seeds", invoke)
    print(f"seeds built in {time.perf_counter() - t0:.0f} s", flush=True)
    outcomes, tried, rnd = [], 0, 0
    while tried < n_cases:
        rng = np.random.default_rng(seed + rnd)
        cases = all_cases(seeds, root / f"round-{rnd}", rng, invoke, kinds)
        for case in cases[: n_cases - tried]:
            tried += 1
            sub = subprocess_every and tried % subprocess_every == 0
            for o in runner.run(case, subprocess_entry=bool(sub)):
                outcomes.append(o)
                mark = "FAIL" if o.failed else "ok"
                print(f"[{tried}/{n_cases}] {mark} exit {o.code} {o.seconds:5.1f}s {case.name}: "
                      f"{' '.join(o.argv[:1])} · {o.first_line[:100]}", flush=True)
        rnd += 1
    print()
    print(f"seed {seed}, {rnd} round(s), {time.perf_counter() - t0:.0f} s")
    print(summary(outcomes))
    return 1 if any(o.failed for o in outcomes) else 0


def _invoker():
    from typer.testing import CliRunner

    from cp_debug.cli.main import app

    def invoke(argv) -> int:
        res = CliRunner().invoke(app, list(argv), catch_exceptions=False)
        return res.exit_code

    return invoke


if __name__ == "__main__":
    sys.exit(main())
