"""The facts `benchmarks/trt_sources.py` read out of TensorRT's and Polygraphy's sources (`tests/data/trt_sources/`),
and the check of a kit script's tool calls against them.

A script is checked by running it: bash itself resolves its arrays and version gates, and fake `trtexec` /
`polygraphy` programs (`fake_tools`) answer the version questions the script asks (trtexec's banner,
`polygraphy --version`) with each version the lists cover, and record every call. Each recorded call is then held
against the list of the version it was given: every trtexec argument must be an option that version's
sampleOptions.cpp parses (with `=value` where its help shows one, and a value its grammar allows where the grammar
enumerates them); every polygraphy call must parse with an argparse parser rebuilt from that version's argument
groups (exact spellings, arity, choices). `static_flags` lists every flag written on a tool's line or in an array
a tool's line uses, so a flag no run reached is still seen.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import io
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "data" / "trt_sources"


@dataclass(frozen=True)
class TrtexecOption:
    name: str
    parsed_by: str
    help: str  # the help line's first word: `--loadInputs=spec`, `--noTF32`
    grammar: tuple[str, ...]  # `format ::= "summary"|"numpy"|...`

    def takes_value(self) -> bool:
        return "=" in self.help or bool(self.grammar)

    def allowed(self) -> tuple[set[str] | None, bool]:
        """(the values the grammar enumerates, or None; whether a value is a ","-separated list of them)."""
        listed = any('[","' in g for g in self.grammar)
        for g in self.grammar:
            rhs = g.split("::=", 1)[1].strip()
            alternatives = [a.strip().strip('"') for a in rhs.split("|")]
            if len(alternatives) > 1 and all(re.fullmatch(r"[\w+.-]+", a) for a in alternatives):
                return set(alternatives), listed
        return None, listed


@dataclass(frozen=True)
class TrtexecList:
    tag: str
    version: int  # NV_TENSORRT_VERSION: 110100
    options: dict[str, TrtexecOption]


def _lines(path: Path) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return f.read().splitlines()


def trtexec_lists() -> list[TrtexecList]:
    """One list per TensorRT tag, in version order."""
    out = []
    for path in (DATA / "trtexec").glob("*.txt.gz"):
        lines = _lines(path)
        version = int(next(ln for ln in lines if ln.startswith("# version: ")).split()[2])
        options = {}
        for ln in lines:
            if ln and not ln.startswith("#"):
                name, parsed_by, word, grammar = ln.split("\t")
                options[name] = TrtexecOption(name, parsed_by, word, tuple(g for g in grammar.split(" ; ") if g))
        out.append(TrtexecList(path.name.removesuffix(".txt.gz"), version, options))
    return sorted(out, key=lambda t: t.version)


def _version_key(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split("."))


@dataclass(frozen=True)
class PolygraphyList:
    version: str
    rows: list[tuple[str, tuple[str, ...], str, str, str]]  # (command, spellings, action, nargs, choices)
    every: dict[tuple[str, ...], str]  # the values meaning every tensor to --onnx-outputs -> "" or its deprecation


def polygraphy_lists() -> dict[str, PolygraphyList]:
    """version -> its list, in version order."""
    out = {}
    for path in (DATA / "polygraphy").glob("*.txt.gz"):
        rows, every = [], {}
        version = path.name.removesuffix(".txt.gz")
        for ln in _lines(path):
            if ln.startswith("# every tensor (--onnx-outputs): "):
                for value in ln.split(": ", 1)[1].split(" | "):
                    words, _, note = value.partition(" (")
                    every[tuple(words.split())] = note.rstrip(")")
            elif ln and not ln.startswith("#"):
                command, spellings, action, nargs, choices, _ = ln.split("\t")
                rows.append((command, tuple(spellings.split()), action, nargs, choices))
        out[version] = PolygraphyList(version, rows, every)
    return dict(sorted(out.items(), key=lambda kv: _version_key(kv[0])))


def facts(kind: str) -> dict[str, dict[str, str]]:
    """tag -> {fact: value} of `debug_tensors` or `accuracy`."""
    out = {}
    for path in (DATA / kind).glob("*.txt"):
        out[path.stem] = dict(ln.split("\t", 1) for ln in _lines(path) if ln and not ln.startswith("#"))
    return out


# -- checking one call -------------------------------------------------------------------------------------------
def trtexec_problems(argv: list[str], listed: TrtexecList) -> list[str]:
    """What in one trtexec call the sources of `listed.tag` do not parse (argsToArgumentsMap: each argument is
    `--name[=value]`, split at the first '=')."""
    problems = []
    for arg in argv:
        name, eq, value = arg.partition("=")
        opt = listed.options.get(name)
        where = f"trtexec {listed.tag} ({listed.version})"
        if opt is None:
            problems.append(f"{where}: {name} is no option its sampleOptions.cpp parses")
            continue
        if bool(eq) != opt.takes_value():
            problems.append(f"{where}: {arg} — its help writes {opt.help!r}")
            continue
        allowed, listed_values = opt.allowed()
        if allowed is not None:
            for item in value.split(",") if listed_values else [value]:
                if item not in allowed:
                    problems.append(f"{where}: {arg} — {item!r} is not one of {sorted(allowed)}")
    return problems


def _parser(rows, command: str) -> argparse.ArgumentParser:
    """An argparse parser with the options `command` has in `rows` (exact spellings only)."""
    parser = argparse.ArgumentParser(prog=f"polygraphy {command}", add_help=False, allow_abbrev=False,
                                     exit_on_error=False)
    for where, spellings, action, nargs, choices in rows:
        if where != command:
            continue
        kw: dict = {}
        if nargs == "0":
            kw["action"] = "count" if action == "_CountAction" else "store_true"
        else:
            if action == "_AppendAction":
                kw["action"] = "append"
            if nargs:
                kw["nargs"] = int(nargs) if nargs.isdigit() else nargs
            if choices:
                kw["choices"] = choices.split(",")
        if spellings[0].startswith("<"):
            parser.add_argument(spellings[0].strip("<>"), **kw)
        else:
            parser.add_argument(*spellings, **kw)
    return parser


def polygraphy_problems(argv: list[str], listed: PolygraphyList) -> list[str]:
    """What in one polygraphy call polygraphy `listed.version`'s argument groups do not accept, and an
    `--onnx-outputs` meaning every tensor in a spelling that version does not read so (or has deprecated)."""
    version = listed.version
    command = "run" if argv[:1] == ["run"] else "polygraphy"
    args = argv[1:] if command == "run" else argv
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            parsed, unknown = _parser(listed.rows, command).parse_known_args(args)
    except (argparse.ArgumentError, SystemExit) as e:
        return [f"polygraphy {version}: {' '.join(argv)}: {e if isinstance(e, argparse.ArgumentError) else ''}"
                f"{err.getvalue().strip()}"]
    problems = [f"polygraphy {version}: {u} is no option of `polygraphy {command}` there" for u in unknown]
    outputs = tuple(getattr(parsed, "onnx_outputs", None) or ())
    if outputs in (("*",), ("mark", "all")):
        note = listed.every.get(outputs)
        if note is None or note:
            problems.append(f"polygraphy {version}: --onnx-outputs {' '.join(outputs)}: "
                            f"{note or 'not every tensor there'} (every tensor: {list(listed.every)})")
    return problems


# -- running a script with fake tools ----------------------------------------------------------------------------
_FAKE_TRTEXEC = """#!/usr/bin/env bash
printf '%s\\0' "$@" > "$FAKE_LOG/call.$$.$RANDOM"
if [ "${1:-}" = --help ] && [ -n "${FAKE_TRT_VERSION:-}" ]; then
  echo "&&&& RUNNING TensorRT.trtexec [TensorRT v$FAKE_TRT_VERSION] [b1] # trtexec --help"
fi
exit 0
"""
_FAKE_POLYGRAPHY = """#!/usr/bin/env bash
printf '%s\\0' "$@" > "$FAKE_LOG/call.$$.$RANDOM"
if [ "${1:-}" = --version ]; then
  echo "Polygraphy | Version: $FAKE_POLYGRAPHY_VERSION | Path: ['/fake/polygraphy']"
fi
exit 0
"""


def fake_tools(folder: Path) -> Path:
    """A folder holding fake `trtexec` and `polygraphy` programs that record their arguments (`run_with_fakes`)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (("trtexec", _FAKE_TRTEXEC), ("polygraphy", _FAKE_POLYGRAPHY)):
        (folder / name).write_text(text)
        (folder / name).chmod(0o755)
    return folder


@dataclass(frozen=True)
class Ran:
    returncode: int
    stderr: str
    calls: list[list[str]]


def run_with_fakes(script: Path, args: list[str], tools: Path, log: Path, *, trt_version: str = "",
                   polygraphy_version: str = "") -> Ran:
    """Run `bash script args` with the fake tools first on PATH, answering as the versions given."""
    log.mkdir(parents=True, exist_ok=True)
    for old in log.glob("call.*"):
        old.unlink()
    env = {**os.environ, "PATH": f"{tools}:{os.environ['PATH']}", "TRTEXEC": str(tools / "trtexec"),
           "FAKE_LOG": str(log), "FAKE_TRT_VERSION": trt_version, "FAKE_POLYGRAPHY_VERSION": polygraphy_version}
    done = subprocess.run(["bash", str(script), *args], capture_output=True, text=True, env=env, timeout=120)
    calls = [p.read_bytes().decode().split("\0")[:-1] for p in sorted(log.glob("call.*"))]
    return Ran(done.returncode, done.stderr, calls)


# -- what the script's text holds --------------------------------------------------------------------------------
_FLAG = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")


def static_flags(text: str, tool: str) -> set[str]:
    """Every flag on a line that calls `tool` (`"$TRTEXEC"` or `polygraphy` as the command word, continuation
    lines included) and in every bash array such a line uses (`"${name[@]}"`, followed through arrays that use
    arrays)."""
    call = re.compile(r'^\s*(?:\(\s*cd [^&]*&&\s*)?(?:[\w$"()]*=\$\()?' + re.escape(tool) + r"\s")
    lines = text.splitlines()
    tool_lines = []
    i = 0
    while i < len(lines):
        if call.search(lines[i]):
            block = [lines[i]]
            while block[-1].rstrip().endswith("\\") and i + 1 < len(lines):
                i += 1
                block.append(lines[i])
            tool_lines.append(" ".join(block))
        i += 1
    arrays: dict[str, list[str]] = {}
    for m in re.finditer(r"\b(\w+)=\(([^()]*(?:\"[^\"]*\"[^()]*)*)\)", text):
        arrays.setdefault(m.group(1), []).append(m.group(2))
    used = set()
    todo = [t for t in tool_lines]
    seen_arrays: set[str] = set()
    while todo:
        line = todo.pop()
        used.update(_FLAG.findall(re.sub(r"\$\{\w+\[@\]\+\"\$\{\w+\[@\]\}\"\}|\"\$\{\w+\[@\]\}\"", " ", line)))
        for name in re.findall(r"\$\{(\w+)\[@\]", line):
            if name not in seen_arrays:
                seen_arrays.add(name)
                todo.extend(arrays.get(name, []))
    return {f for f in used if f.startswith("--") or f in ("-h", "-v")}
