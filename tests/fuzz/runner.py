"""Drive fuzz cases through cpdebug and check what every run must keep, whatever it was handed.

In process through typer's CliRunner on `cp_debug.cli.main.app` (torch is imported once), or as a fresh
`python -m cp_debug.cli.main` (the real entry point). Each command gets an empty output folder (`{OUT}`); after
it, `check` holds the run to:
- no traceback (an uncaught exception in process, exit 70, or "Traceback" in the output);
- exit 2 or 3 for an input that cannot be used (`Case.bad`), and then stderr's last line is one
  `cpdebug: error: …` line (click's own usage errors, exit 2, stay click's);
- nothing half-written in the output folder: no temporary file, every JSON / npz file whole; on exit 2 or 3 no
  file at all (a sweep's resume state — manifest, shards — excepted);
- the input files unchanged, and the marker file that a pickle's or a module's code would create absent.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tests.fuzz.mutations import Case, environment_clean

ROOT = Path(__file__).resolve().parents[2]
ERROR_PREFIX = "cpdebug: error: "
_SWEEP_STATE = ("manifest.json", "shards", ".lock", "model")


@dataclass
class Outcome:
    case: Case
    argv: tuple[str, ...]
    code: int | None  # None: timed out
    stderr: str
    seconds: float
    traceback: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def first_line(self) -> str:
        """The line a reader of the campaign sees: the error line, the exception, or the last line of stderr."""
        if self.traceback:
            return self.traceback.strip().splitlines()[-1][:160]
        lines = [ln for ln in self.stderr.splitlines() if ln.strip()]
        err = [ln for ln in lines if ln.startswith(ERROR_PREFIX)]
        if err:
            return err[-1][:160]
        if self.code == 2 and any("Usage:" in ln for ln in lines):
            return "usage: " + next((ln.strip(" │") for ln in lines if "Invalid value" in ln or "Error" in ln
                                     or "Missing" in ln or "No such" in ln), lines[-1])[:150]
        return (lines[-1] if lines else "")[:160]

    @property
    def failed(self) -> bool:
        return bool(self.traceback or self.problems)

    def describe(self) -> str:
        head = f"{self.case.label} :: cpdebug {' '.join(self.argv)}"
        body = [f"  exit {self.code}: {self.first_line}"] + [f"  problem: {p}" for p in self.problems]
        if self.traceback:
            body.append("  " + self.traceback.rstrip().replace("\n", "\n  "))
        return "\n".join([head, *body])


class CaseTimeout(BaseException):
    """Raised by SIGALRM in an in-process run that takes longer than the case's limit."""


def _alarm(signum, frame):
    raise CaseTimeout()


class Runner:
    """Runs cases in `scratch` (one output folder per command); `marker` must never appear."""

    def __init__(self, scratch: Path, marker: Path, timeout_s: int = 300):
        self.scratch, self.marker, self.timeout_s = Path(scratch), Path(marker), timeout_s
        self.scratch.mkdir(parents=True, exist_ok=True)
        self._n = 0

    def out_dir(self) -> Path:
        self._n += 1
        d = self.scratch / f"out-{self._n:05d}"
        d.mkdir()
        return d

    def run(self, case: Case, subprocess_entry: bool = False) -> list[Outcome]:
        return [self.run_one(case, argv, subprocess_entry) for argv in case.commands]

    def run_one(self, case: Case, argv: tuple[str, ...], subprocess_entry: bool = False) -> Outcome:
        out = self.out_dir()
        argv = tuple(a.replace("{OUT}", str(out)) for a in argv)
        inputs = _input_paths(argv, out)
        before = {p: _snapshot(p) for p in inputs}
        t0 = time.perf_counter()
        if subprocess_entry:
            o = self._subprocess(case, argv)
        else:
            o = self._in_process(case, argv)
        o.seconds = time.perf_counter() - t0
        check(o, out, before, self.marker)
        if not o.failed:
            shutil.rmtree(out, ignore_errors=True)
        return o

    def _in_process(self, case: Case, argv) -> Outcome:
        from typer.testing import CliRunner

        from cp_debug.cli.main import app

        env = {**environment_clean(), "COLUMNS": "200", **case.env}
        old = signal.signal(signal.SIGALRM, _alarm) if self.timeout_s else None
        if self.timeout_s:
            signal.alarm(self.timeout_s)
        try:
            res = CliRunner().invoke(app, list(argv), env=env, catch_exceptions=True)
        except CaseTimeout:
            return Outcome(case, argv, None, f"timed out after {self.timeout_s} s", 0.0)
        finally:
            if self.timeout_s:
                signal.alarm(0)
                signal.signal(signal.SIGALRM, old)
        tb = None
        if res.exception is not None and not isinstance(res.exception, SystemExit):
            tb = "".join(traceback.format_exception(*res.exc_info))
        stderr = res.stderr
        if tb is None and ("Traceback (most recent call last)" in res.output or res.exit_code == 70):
            tb = stderr or res.output
        return Outcome(case, argv, res.exit_code, stderr, 0.0, tb)

    def _subprocess(self, case: Case, argv) -> Outcome:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CPDEBUG_")}
        path = os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))  # the repo first
        env.update({"PYTHONPATH": path, "COLUMNS": "200", **case.env})
        try:
            p = subprocess.run([sys.executable, "-m", "cp_debug.cli.main", *argv], capture_output=True, text=True,
                               env=env, timeout=self.timeout_s or None, cwd=self.scratch)
        except subprocess.TimeoutExpired:
            return Outcome(case, argv, None, f"timed out after {self.timeout_s} s", 0.0)
        tb = p.stderr if ("Traceback (most recent call last)" in p.stderr or p.returncode == 70) else None
        return Outcome(case, argv, p.returncode, p.stderr, 0.0, tb)


def _input_paths(argv, out: Path) -> list[Path]:
    """The existing files and folders the command line names, outside its output folder (and not a --out)."""
    paths = []
    for i, a in enumerate(argv):
        if i and argv[i - 1] in ("--out", "-o", "--resume"):
            continue
        for part in (a.split("@", 1)[1] if "@" in a else a, a):
            p = Path(part)
            if p.is_absolute() and p.exists() and out not in p.parents and p != out and not str(p).startswith("/proc"):
                paths.append(p)
                break
    return paths


def _snapshot(p: Path) -> dict:
    files = [p] if p.is_file() else sorted(q for q in p.rglob("*") if q.is_file())
    return {str(q): (q.stat().st_size, q.stat().st_mtime_ns) for q in files}


def check(o: Outcome, out: Path, before: dict, marker: Path) -> None:
    """Add the contract's violations to `o.problems` (see the module docstring)."""
    if marker.exists():
        o.problems.append(f"code from a user's file ran: {marker} exists")
        marker.unlink()
    if o.code is None:
        o.problems.append(o.stderr)
        return
    for p, snap in before.items():
        if p.exists() and _snapshot(p) != snap:
            o.problems.append(f"input {p} changed")
    errored = o.code in (2, 3)
    lines = [ln for ln in o.stderr.splitlines() if ln.strip()]
    usage = o.code == 2 and any("Usage:" in ln for ln in lines)
    if errored and not usage and not o.traceback:
        if not lines or not lines[-1].startswith(ERROR_PREFIX):
            o.problems.append(f"exit {o.code} without a '{ERROR_PREFIX}…' last line on stderr")
        elif len(lines[-1]) <= len(ERROR_PREFIX) + 8:
            o.problems.append(f"error line says nothing: {lines[-1]!r}")
    frame_failed = o.code == 1 and o.argv[0] == "sweep" and "--scenes" in o.argv  # one frame of a set: documented
    if o.case.bad and not errored and not o.traceback and not frame_failed:
        o.problems.append(f"accepted input that cannot be used: exit {o.code}")
    if o.code not in (0, 1, 2, 3, 4, 5) and not o.traceback:
        o.problems.append(f"exit {o.code}")
    sweep_out = o.argv and o.argv[0] == "sweep"
    for f in sorted(q for q in out.rglob("*") if q.is_file()):
        rel = f.relative_to(out)
        if ".tmp" in f.name or f.name.endswith((".partial", "~")):
            o.problems.append(f"half-written file left: {rel}")
        elif errored and not (sweep_out and any(part in _SWEEP_STATE for part in rel.parts)) \
                and not f.name.endswith(".partial.json"):
            o.problems.append(f"wrote {rel} and still exited {o.code}")
        elif not _whole(f):
            o.problems.append(f"file not whole: {rel}")


def _whole(f: Path) -> bool:
    try:
        if f.suffix == ".json":
            json.loads(f.read_text())
        elif f.suffix in (".npz", ".pth", ".pt"):
            with zipfile.ZipFile(f) as z:
                return z.testzip() is None
    except (ValueError, OSError, zipfile.BadZipFile):
        return False
    return True


def summary(outcomes: list[Outcome]) -> str:
    """How many cases and runs, how each ended (per exit code, then per first line), and every failure."""
    cases = {o.case.label for o in outcomes}
    by_code = Counter("timeout" if o.code is None else o.code for o in outcomes)
    lines = [f"{len(cases)} cases, {len(outcomes)} command runs",
             "exit codes: " + ", ".join(f"{k}: {v}" for k, v in sorted(by_code.items(), key=str)),
             f"tracebacks: {sum(1 for o in outcomes if o.traceback)}",
             f"other failures: {sum(1 for o in outcomes if o.problems and not o.traceback)}", ""]
    by_end = Counter((o.code, _generic(o.first_line)) for o in outcomes)
    for (code, line), n in sorted(by_end.items(), key=lambda kv: (str(kv[0][0]), -kv[1])):
        lines.append(f"  {n:4d} × exit {code}: {line}")
    fails = [o for o in outcomes if o.failed]
    if fails:
        lines += ["", "FAILURES"] + [o.describe() for o in fails]
    return "\n".join(lines)


def _generic(line: str) -> str:
    """A first line with its paths and numbers blurred, so that one kind of ending counts once."""
    import re

    line = re.sub(r"(/[\w.@+-]+)+", "PATH", line)
    return re.sub(r"\d+(\.\d+)?", "N", line)[:140]
