"""The command outputs README.md and docs/ show are what the commands print (issue 117, item 1).

A shown output is a fenced block whose first line is `$ cpdebug …`: the rest of that line is the command, the lines
under it what it printed (stdout and stderr together, `COLUMNS=110` unless the block says `columns=N`). This script
runs each such command in an empty temporary folder (this checkout's code: `python -m cp_debug.cli.main`, PYTHONPATH
the repository) and checks that every shown line appears in the real output, in order:
- lines are compared by their words (runs of blanks are one), so a table's alignment may move;
- `…` alone on a line is elided output; `…` inside a line is elided text (any run of characters);
- a number matches a number within 25% of it (or 1e-9): the same run on another CPU (AMD, Intel) rounds otherwise,
  while probe names, ★ / ◀ markers, statuses and verdicts must be word for word.

An HTML comment on the line just above the fence says what a block needs (all optional, shell-quoted values):
    <!-- docs-check: exit=1 file=my_model.py setup="python -c '…'" columns=130 timeout=900 -->
    <!-- docs-check: skip="needs TensorRT-RTX on an RTX GPU" -->
`exit` is the exit code the command must end with (checked where given); `file=my_model.py` writes the page's code
block that starts `# my_model.py` into the folder first (so the file shown is the file run); `setup` a shell command
run first in the folder (to make other files the command reads); `skip` (with its reason) leaves a block that cannot
run here unchecked — it is still listed. Blocks with the same command, files and setup run once.

    python benchmarks/docs_check.py                 # run every block, report the lines that no longer appear
    python benchmarks/docs_check.py --list          # the blocks, their markers, nothing run
    python benchmarks/docs_check.py --update        # rewrite stale blocks from the real runs
    python benchmarks/docs_check.py README.md -k tiny   # one page, the blocks whose command matches `tiny`

`--update` keeps a block the author trimmed where it still matches (its numbers refreshed) and otherwise writes the
whole real output in its place (its timed `✓` progress lines as one `…`), to be trimmed again with `…`. Exit 0: every
block matches; 1: a block is stale (or ended with another exit code); 2: a malformed block.
tests/docs/test_docs_check.py checks that every block is well-formed and runs the cheapest one.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = 110
MARKER = re.compile(r"^<!--\s*docs-check:(.*?)-->\s*$")
KEYS = {"columns", "exit", "file", "setup", "skip", "timeout"}
SOURCE = re.compile(r"^# ([\w.-]+\.\w+)$")  # a code block that is a file the reader writes: `# my_model.py`
ELIDED = "…"
# a number standing as a word (not the `0` of `pfn_layers.0.linear`); only a decimal one is compared loosely
NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?![\w]|\.\d)")
REL_TOL = 0.25


@dataclass
class Block:
    """One shown output: where it is, its command, what it shows, its markers."""

    page: Path
    line: int  # 1-based line of the `$` line
    end: int  # 1-based line of the closing fence
    command: str
    shown: list[str]
    markers: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # name -> text, the page's blocks `file=` names

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def key(self) -> tuple:
        return self.command, self.markers.get("setup", ""), self.markers.get("columns", ""), *sorted(self.files.items())


def pages() -> list[Path]:
    """README.md and every page under docs/ but the lab notebook (docs/measurements.md quotes its runs as records)."""
    return [ROOT / "README.md", *sorted(p for p in (ROOT / "docs").rglob("*.md") if p.name != "measurements.md")]


def parse_markers(text: str) -> dict[str, str]:
    markers = {}
    for item in shlex.split(text):
        key, _, value = item.partition("=")
        if key not in KEYS:
            raise ValueError(f"unknown docs-check key {key!r} (known: {', '.join(sorted(KEYS))})")
        markers[key] = value
    if "skip" in markers and not markers["skip"].strip():
        raise ValueError("skip needs its reason: skip=\"why this block cannot run here\"")
    for key in ("columns", "exit", "timeout"):
        if key in markers and not markers[key].isdigit():
            raise ValueError(f"{key}={markers[key]!r} is no whole number")
    return markers


def _sources(lines: list[str]) -> dict[str, str]:
    """The page's code blocks that are files (first line `# NAME.EXT`), by name: what `file=` writes before a run."""
    found = {}
    for i, line in enumerate(lines[:-1]):
        named = SOURCE.match(lines[i + 1].strip())
        if line.strip().startswith("```") and named:
            end = next((j for j in range(i + 1, len(lines)) if lines[j].strip().startswith("```")), len(lines))
            found[named.group(1)] = "\n".join(lines[i + 1:end]) + "\n"
    return found


def blocks(page: Path) -> list[Block]:
    """The page's shown outputs. Raises ValueError naming the line for a malformed one (a marker above no `$` block,
    an unclosed fence, a `$` line that is no cpdebug command)."""
    lines = page.read_text().splitlines()
    sources = _sources(lines)
    found, i = [], 0
    while i < len(lines):
        marker = MARKER.match(lines[i].strip())
        if marker and not (i + 2 < len(lines) and lines[i + 1].strip().startswith("```")
                           and lines[i + 2].strip().startswith("$ ")):
            raise ValueError(f"{page.name}:{i + 1}: a docs-check marker must stand just above a ``` fence whose "
                             "first line is `$ cpdebug …`")
        if lines[i].strip().startswith("```") and i + 1 < len(lines) and lines[i + 1].strip().startswith("$ "):
            end = next((j for j in range(i + 2, len(lines)) if lines[j].strip().startswith("```")), None)
            if end is None:
                raise ValueError(f"{page.name}:{i + 2}: the block is not closed")
            command = lines[i + 1].strip()[2:].strip()
            if not command.startswith("cpdebug "):
                raise ValueError(f"{page.name}:{i + 2}: a shown output's command must be `cpdebug …`: {command!r}")
            shlex.split(command)
            prev = MARKER.match(lines[i - 1].strip()) if i else None
            try:
                markers = parse_markers(prev.group(1)) if prev else {}
            except ValueError as e:
                raise ValueError(f"{page.name}:{i}: {e}") from None
            names = [n for n in markers.get("file", "").split(",") if n]
            if any(n not in sources for n in names):
                raise ValueError(f"{page.name}:{i}: file= names a file the page does not show as a block starting "
                                 f"`# NAME` (it shows: {', '.join(sources) or 'none'})")
            found.append(Block(page, i + 2, end + 1, command, lines[i + 2:end], markers,
                               {n: sources[n] for n in names}))
            i = end
        i += 1
    return found


def all_blocks(names: list[str] | None = None) -> list[Block]:
    chosen = [ROOT / n for n in names] if names else pages()
    return [b for page in chosen for b in blocks(page)]


# ---- matching ----------------------------------------------------------------------------------------------------


def _words(line: str) -> str:
    """The line's words one blank apart; a rule (`────`) of any length is one `─`."""
    return re.sub("─+", "─", " ".join(line.split()))


def _numbers_close(shown: list[str], real: list[str]) -> bool:
    for a, b in zip(shown, real):
        if not re.search(r"[.eE]", a):
            if a != b:  # an integer (a row, a count of boxes, an exit code) is exact
                return False
            continue
        x, y = float(a), float(b)
        if abs(x - y) > REL_TOL * max(abs(x), abs(y)) + 1e-9:
            return False
    return True


def _pieces(line: str) -> list[tuple[str, str]]:
    """The line's words cut at each `…` and each number: (kind, text), kind `…`, `number` or `text`."""
    text, pieces, at = _words(line), [], 0
    for m in re.finditer("…|" + NUMBER.pattern, text):
        pieces += [("text", text[at:m.start()]), (ELIDED if m.group() == ELIDED else "number", m.group())]
        at = m.end()
    return [(kind, piece) for kind, piece in [*pieces, ("text", text[at:])] if piece]


def _pattern(line: str) -> re.Pattern:
    """A shown line as a pattern over a real line's words: `…` any text, each number any number (checked after)."""
    pieces, parts = _pieces(line), []
    for k, (kind, piece) in enumerate(pieces):
        if kind == ELIDED:
            parts.append(".*?")
        elif kind == "number":
            parts.append(f"({NUMBER.pattern})")
        else:  # the blank beside a `…` is elided with it: `from INT8 …` matches a line ending `from INT8`
            if k and pieces[k - 1][0] == ELIDED:
                piece = piece.lstrip()
            if k + 1 < len(pieces) and pieces[k + 1][0] == ELIDED:
                piece = piece.rstrip()
            parts.append(re.escape(piece))
    return re.compile("".join(parts))


def _shown_numbers(shown: str) -> list[str]:
    return [piece for kind, piece in _pieces(shown) if kind == "number"]


def match(shown: list[str], real: list[str]) -> tuple[list[int | None], list[str]]:
    """Each shown line's index in the real output (None for `…` and blank lines), in order; the lines not found.

    A shown line must come after the one before it; numbers are compared against the shown ones."""
    at, missing, start = [], [], 0
    for line in shown:
        if not line.strip() or line.strip() == ELIDED:
            at.append(None)
            continue
        pattern, want = _pattern(line), _shown_numbers(line)
        hit = None
        for k in range(start, len(real)):
            m = pattern.fullmatch(_words(real[k]))
            if m and _numbers_close(want, [g for g in m.groups() if g is not None]):
                hit = k
                break
        if hit is None and "│" not in line:  # prose a terminal of another width (or a number one digit longer)
            # wrapped elsewhere: its words in order across lines, from the line the one before it ended in
            hit = _reflowed(pattern, want, real, max(0, start - 1))
        at.append(hit)
        if hit is None:
            missing.append(line)
        else:
            start = hit + 1
    return at, missing


def _reflowed(pattern: re.Pattern, want: list[str], real: list[str], start: int) -> int | None:
    """The index of the real line where a shown prose line ends when its words run on across line breaks (the
    real lines from `start` joined one blank apart, the shown line found in them from a word's start), else None."""
    ends, text = [], ""
    for line in real[start:]:
        text = f"{text} {_words(line)}" if text else _words(line)
        ends.append(len(text))
    for m in pattern.finditer(text):
        if (m.start() == 0 or text[m.start() - 1] == " ") and _numbers_close(want, [g for g in m.groups() if g]):
            return start + next(k for k, end in enumerate(ends) if end >= m.end())
    return None


# ---- running -----------------------------------------------------------------------------------------------------


@dataclass
class Run:
    code: int
    lines: list[str]


def run(block: Block) -> Run:
    """The block's command in an empty temporary folder, this checkout's cpdebug, stdout and stderr together."""
    argv = shlex.split(block.command)
    env = {**os.environ, "COLUMNS": block.markers.get("columns") or str(COLUMNS), "PYTHONPATH": str(ROOT),
           "CPDEBUG_SERVER": "off", "NO_COLOR": "1", "TERM": "dumb"}
    timeout = float(block.markers.get("timeout") or 1800)
    with tempfile.TemporaryDirectory(prefix="cpdebug-docs-check-") as folder:
        for name, text in block.files.items():
            (Path(folder) / name).write_text(text)
        if block.markers.get("setup"):
            subprocess.run(block.markers["setup"], shell=True, cwd=folder, env=env, check=True, timeout=timeout)
        done = subprocess.run([sys.executable, "-m", "cp_debug.cli.main", *argv[1:]], cwd=folder, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
    return Run(done.returncode, [line.rstrip() for line in done.stdout.splitlines()])


def check(block: Block, result: Run) -> list[str]:
    """What is wrong with the block against its run: empty when it matches."""
    problems = []
    if "exit" in block.markers and int(block.markers["exit"]) != result.code:
        problems.append(f"exit {result.code}, the block says {block.markers['exit']}")
    _, missing = match(block.shown, result.lines)
    problems += [f"not in the output (or out of order): {line.strip()}" for line in missing]
    return problems


def updated(block: Block, result: Run) -> list[str]:
    """The block's new lines: the author's trim with the real lines where every shown line matches, else the whole
    real output."""
    at, missing = match(block.shown, result.lines)
    if missing or not any(k is not None for k in at):  # the whole output, its progress lines (timed) one `…`
        whole: list[str] = []
        for line in result.lines:
            if not (line.startswith("✓ ") and whole and whole[-1] == ELIDED):
                whole.append(ELIDED if line.startswith("✓ ") else line)
        return whole
    return [line if k is None else result.lines[k] for line, k in zip(block.shown, at)]


def rewrite(page: Path, changes: list[tuple[Block, list[str]]]) -> None:
    lines = page.read_text().splitlines()
    for block, new in sorted(changes, key=lambda c: -c[0].line):
        lines[block.line:block.end - 1] = new  # the lines between the `$` line and the closing fence
    tmp = page.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(page)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pages", nargs="*", help="pages relative to the repository (default: README.md, docs/)")
    parser.add_argument("-k", default="", help="only the blocks whose command this regular expression finds")
    parser.add_argument("--list", action="store_true", help="list the blocks, run nothing")
    parser.add_argument("--update", action="store_true", help="rewrite stale blocks from the real runs")
    parser.add_argument("--show", action="store_true", help="print each stale block's real output")
    args = parser.parse_args(argv)
    try:
        chosen = [b for b in all_blocks(args.pages) if re.search(args.k, b.command)]
    except ValueError as e:
        print(f"docs_check: {e}", file=sys.stderr)
        return 2
    if args.list:
        for b in chosen:
            print(f"{b.where}  {b.command}  {b.markers or ''}")
        return 0
    runs: dict[tuple, Run] = {}
    stale, changes = 0, {}
    for b in chosen:
        if "skip" in b.markers:
            print(f"skip  {b.where}  {b.command}  ({b.markers['skip']})")
            continue
        if b.key not in runs:
            print(f"run   {b.where}  {b.command}", flush=True)
            runs[b.key] = run(b)
        problems = check(b, runs[b.key])
        print(f"{'stale' if problems else 'ok   '} {b.where}  exit {runs[b.key].code}")
        for p in problems:
            print(f"        {p}")
        if problems:
            stale += 1
            if args.show:
                print("\n".join(f"      | {line}" for line in runs[b.key].lines))
        if args.update:
            new = updated(b, runs[b.key])
            if new != b.shown:
                changes.setdefault(b.page, []).append((b, new))
    for page, page_changes in changes.items():
        rewrite(page, page_changes)
        print(f"updated {page.relative_to(ROOT)}: {', '.join(str(b.line) for b, _ in page_changes)}")
    return 1 if stale and not args.update else 0


if __name__ == "__main__":
    sys.exit(main())
