"""What TensorRT's and Polygraphy's own sources say about the flags and files the kit relies on, per version, as
compact lists under `tests/data/trt_sources/` (facts only: no NVIDIA or Polygraphy code is copied).

- `trtexec/<tag>.txt.gz`: every option trtexec parses at a NVIDIA/TensorRT tag. Read from
  `samples/common/sampleOptions.cpp`: the options named by a string literal handed to a parse call
  (`getAndDelOption`, `getAndDelNegOption`, `getAndDelRepeatedOption`, `getAndDelOptionBehind`, `getShapesBuild`,
  the `getFormats` lambda, ...) inside the functions trtexec reaches from `AllOptions::parse` and `parseHelp` (the two
  calls of `parseArgs` in `samples/trtexec/trtexec.cpp`; member `.parse` calls resolved through `sampleOptions.h`),
  each with the parse forms that read it, the option's help line and its grammar lines (`format ::= ...`).
- `polygraphy/<version>.txt.gz`: every option of `polygraphy` and `polygraphy run`, as the argument groups of that
  version add them to argparse (built by the version's own code from a copy of its sources, nothing installed):
  its spellings (`<dest>` for a positional), action, nargs, choices and group; and the values that mean every
  tensor to `--onnx-outputs` (`get_outputs`: `mark all`, `*`). Versions come from `tools/Polygraphy` at the tags
  and from PyPI wheels (`pip download --no-deps`).
- `debug_tensors/<tag>.txt`: how trtexec names and writes a debug tensor (`samples/common/debugTensorWriter.cpp`,
  `genFilenameSafeString` in `samples/common/common.h`), for each tag that has the writer (10.12 on).
- `accuracy/<tag>.txt`: trtexec's `--loadRefOutputs` check (`sampleUtils.cpp` L0 validator, the threshold test
  in `sampleInference.cpp`, the option types in `sampleOptions.h`), for each tag that has it (11.1 on).

Each file's header names its source: tag and commit (and the blob of each file read), or the wheel and its sha256.
A source this script cannot read the way it expects stops it with the reason: read that source, then fix this
script, rather than let a list go quietly short. `tests/kit/test_kit_sources.py` checks the kit's scripts against
these lists (and trtexec's reference check against `accuracy/`), `tests/backends/test_trt_dumps.py` the dump reader
against `debug_tensors/`.

Run from the repo root (a clone of github.com/NVIDIA/TensorRT, bare or not; PyPI reachable for the wheels):
    python benchmarks/trt_sources.py --repo PATH [--tags v10.0.0 ... v11.1] [--polygraphy 0.49.26 0.50.3 ...]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "trt_sources"
# the wheels PyPI holds beyond the copies in the repository (0.49.26 first has --mark-unfused-tensors-as-debug-tensors;
# `pip index versions polygraphy` lists no 0.51.x or 0.52.x)
POLYGRAPHY_WHEELS = ("0.49.26", "0.50.3", "0.53.4", "0.53.6")
SAMPLE_OPTIONS = "samples/common/sampleOptions.cpp"
SAMPLE_OPTIONS_H = "samples/common/sampleOptions.h"
TRTEXEC = "samples/trtexec/trtexec.cpp"
WRITER = "samples/common/debugTensorWriter.cpp"
COMMON_H = "samples/common/common.h"
INFERENCE = "samples/common/sampleInference.cpp"
UTILS = "samples/common/sampleUtils.cpp"
VERSION_H = "include/NvInferVersion.h"
ROOTS = ("AllOptions::parse", "parseHelp")
# the calls a parse function hands an option's name to (the name is their first string-literal argument);
# a literal handed to any other call (a message, a comparison) is not an option trtexec reads
PARSE_FORMS = {"getAndDelOption", "getAndDelNegOption", "getAndDelRepeatedOption", "getAndDelOptionWithPosition",
               "getAndDelOptionBehind", "getOption", "getShapesBuild", "getShapesInference", "getFormats",
               "getLayerPrecisions", "getLayerOutputTypes", "getLayerDeviceTypes", "getDecomposableAttentions",
               "getStringsSet", "getAndDelStringsSet", "getTempfileControls", "getOptimizationProfiles"}
NOT_PARSE = {"invalid_argument", "string", "runtime_error", "find", "compare", "peekArg"}
_OPTION_LITERAL = re.compile(r'"(-{1,2}[A-Za-z][A-Za-z0-9]*)"')
_FUNCTION_LINE = re.compile(r"^(?!namespace\b|using\b|template\b|struct\b|class\b|enum\b|typedef\b|return\b"
                            r"|static_assert\b|#|//|/\*|\}|\{)[A-Za-z_][^;(]*?"
                            r"([A-Za-z_~][\w]*(?:::[A-Za-z_~][\w]*)*|operator\S+)\s*\(")
_LITERAL = re.compile(r'R"\((.*?)\)"|"((?:[^"\\]|\\.)*)"')


# -- the repository --------------------------------------------------------------------------------------------
def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def show(repo: Path, tag: str, path: str) -> str | None:
    done = subprocess.run(["git", "-C", str(repo), "show", f"{tag}:{path}"], capture_output=True, text=True)
    return done.stdout if done.returncode == 0 else None


def blob(repo: Path, tag: str, path: str) -> str:
    return git(repo, "rev-parse", f"{tag}:{path}").strip()


def source_header(repo: Path, tag: str, paths: list[str]) -> list[str]:
    commit = git(repo, "rev-parse", f"{tag}^{{commit}}").strip()
    return ([f"# source: NVIDIA/TensorRT {tag} (commit {commit})"]
            + [f"# file: {p} (blob {blob(repo, tag, p)})" for p in paths])


def trt_version(repo: Path, tag: str) -> int:
    """NV_TENSORRT_VERSION (major*10000 + minor*100 + patch, what trtexec's banner prints) from NvInferVersion.h."""
    text = show(repo, tag, VERSION_H) or ""
    parts = []
    for key in ("MAJOR", "MINOR", "PATCH"):
        m = (re.search(rf"#define TRT_{key}_ENTERPRISE (\d+)", text)
             or re.search(rf"#define NV_TENSORRT_{key} (\d+)", text))
        if m is None:
            raise SystemExit(f"{tag}: no TensorRT {key.lower()} version in {VERSION_H}")
        parts.append(int(m.group(1)))
    return parts[0] * 10000 + parts[1] * 100 + parts[2]


def tags(repo: Path) -> list[str]:
    """The release tags of TensorRT 10 and 11 (v10.0.0 ... v11.1), in version order."""
    found = [t for t in git(repo, "tag").split() if re.fullmatch(r"v1[01]\.\d+(\.\d+)?", t)]
    return sorted(found, key=lambda t: tuple(int(x) for x in t[1:].split(".")))


# -- trtexec's options -------------------------------------------------------------------------------------------
def functions(src: str) -> dict[str, str]:
    """Top-level function name -> its text (NVIDIA's clang-format style: a definition starts at column 0 inside
    the namespaces; its text runs to the next one)."""
    out: dict[str, str] = {}
    name, lines = None, []
    for line in src.splitlines():
        m = _FUNCTION_LINE.match(line)
        if m:
            if name is not None:
                out[name] = out.get(name, "") + "\n".join(lines)
            name, lines = m.group(1), []
        lines.append(line)
    if name is not None:
        out[name] = out.get(name, "") + "\n".join(lines)
    return out


def members(header: str) -> dict[str, str]:
    """Member name -> its options class (`ModelOptions model;` in sampleOptions.h)."""
    return {m.group(2): m.group(1) for m in re.finditer(r"^\s*(\w+Options)\s+(\w+)\s*;", header, re.M)}


def reached(funcs: dict[str, str], member_types: dict[str, str]) -> list[str]:
    """The functions trtexec's parsing reaches from ROOTS: `member.parse(` through the member's class, and calls of
    the file's other functions by name."""
    free = {n for n in funcs if "::" not in n and n.isidentifier()}
    todo, seen = [r for r in ROOTS if r in funcs], []
    missing = [r for r in ROOTS if r not in funcs]
    if missing:
        raise SystemExit(f"{SAMPLE_OPTIONS}: {', '.join(missing)} not found: read the file and fix this script")
    while todo:
        f = todo.pop()
        if f in seen:
            continue
        seen.append(f)
        body = _code(funcs[f])
        for m in re.finditer(r"\b(\w+)\.parse\s*\(", body):
            cls = member_types.get(m.group(1))
            if cls is None:
                raise SystemExit(f"{f}: {m.group(1)}.parse: its class is not in {SAMPLE_OPTIONS_H}")
            todo.append(f"{cls}::parse")
        for m in re.finditer(r"\b(\w+)\s*\(", body):
            if m.group(1) in free and m.group(1) != f.split("::")[-1]:
                todo.append(m.group(1))
    return seen


def _code(text: str) -> str:
    """The text without comments (string literals kept)."""
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def _callee(text: str, pos: int) -> str:
    """The name of the call whose argument list holds position `pos`."""
    depth = 0
    for i in range(pos - 1, -1, -1):
        c = text[i]
        if c == ")":
            depth += 1
        elif c == "(":
            if depth == 0:
                m = re.search(r"([A-Za-z_]\w*)\s*$", text[:i])
                return m.group(1) if m else ""
            depth -= 1
        elif c in ";{}" and depth == 0:
            return ""
    return ""


def parsed_options(funcs: dict[str, str], reach: list[str]) -> dict[str, set[str]]:
    """option -> {"Function:form"}: each string literal handed to a parse call in a reached function."""
    out: dict[str, set[str]] = {}
    for f in reach:
        body = _code(funcs[f])
        for m in _OPTION_LITERAL.finditer(body):
            form = _callee(body, m.start())
            if form in NOT_PARSE or form == "":
                continue
            if form not in PARSE_FORMS:
                raise SystemExit(f"{f}: option {m.group(1)} is handed to {form}(), a call this script does not know: "
                                 f"read it in {SAMPLE_OPTIONS} and add it to PARSE_FORMS or NOT_PARSE")
            out.setdefault(m.group(1), set()).add(f"{f}:{form}")
    return out


def _literal_text(line: str) -> str:
    """The text of a line's string literals (C escapes `\\n`, `\\t`, `\\"` read as what they print)."""
    return "".join(raw if raw else re.sub(r"\\([nt])", " ", plain).replace('\\"', '"')
                   for raw, plain in _LITERAL.findall(line))


def help_lines(funcs: dict[str, str]) -> dict[str, tuple[str, list[str]]]:
    """option -> (its help line's first word, the grammar lines of its help entry), from the `*help*` functions."""
    out: dict[str, tuple[str, list[str]]] = {}
    for name, text in funcs.items():
        if "help" not in name.lower():
            continue
        current = None
        for line in text.splitlines():
            words = _literal_text(line)
            m = re.match(r"\s{1,4}(-{1,2}[A-Za-z][A-Za-z0-9]*)(\S*)", words)
            if m:
                current = m.group(1)
                if current not in out:
                    out[current] = (m.group(1) + m.group(2).rstrip(","), re.findall(r"\w+ ::= \S+", words))
                else:
                    current = None  # a second entry (another tool's help): keep the first
            elif current and "::=" in words:
                out[current][1].append(" ".join(words.split()))
    return out


def trtexec_list(repo: Path, tag: str) -> tuple[list[str], int]:
    src = show(repo, tag, SAMPLE_OPTIONS)
    header = show(repo, tag, SAMPLE_OPTIONS_H)
    main = show(repo, tag, TRTEXEC)
    if src is None or header is None or main is None:
        raise SystemExit(f"{tag}: {SAMPLE_OPTIONS}, {SAMPLE_OPTIONS_H} or {TRTEXEC} is missing")
    if "parseHelp(" not in main or not re.search(r"options\.parse\(\s*args\s*\)", main):
        raise SystemExit(f"{tag}: {TRTEXEC} no longer parses through parseHelp(args) and options.parse(args): read "
                         "its parseArgs and fix ROOTS")
    funcs = functions(src)
    reach = reached(funcs, members(header))
    options = parsed_options(funcs, reach)
    helps = help_lines(funcs)
    version = trt_version(repo, tag)
    head = source_header(repo, tag, [SAMPLE_OPTIONS, SAMPLE_OPTIONS_H, TRTEXEC, VERSION_H])
    head += [f"# version: {version} (NV_TENSORRT_VERSION, as trtexec's banner prints it)",
             f"# parse functions reached from {' and '.join(ROOTS)}: {', '.join(sorted(reach))}",
             f"# options: {len(options)}",
             "# option<TAB>parsed by (function:form)<TAB>help line's first word<TAB>grammar lines (' ; ')"]
    rows = []
    for opt in sorted(options, key=str.lower):
        word, grammar = helps.get(opt, ("", []))
        rows.append("\t".join([opt, ",".join(sorted(options[opt])), word, " ; ".join(grammar)]))
    return head + rows, version


# -- polygraphy's options ----------------------------------------------------------------------------------------
_DUMP = r"""
import argparse, json, sys
src = sys.argv[1]
sys.path.insert(0, src)
import polygraphy
assert polygraphy.__file__.startswith(src), polygraphy.__file__
from polygraphy.tools.registry import TOOL_REGISTRY
out = []
def dump(where, parser):
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            continue
        group = next((g.title for g in parser._action_groups if a in g._group_actions), "")
        spellings = a.option_strings or ["<" + a.dest + ">"]  # a positional: its place, by its dest
        out.append([where, spellings, type(a).__name__, a.nargs, list(a.choices) if a.choices else [], group or ""])
top = argparse.ArgumentParser()
top.add_argument("-v", "--version", action="version", version="")  # tools/_main.py adds it to the top parser
sub = top.add_subparsers()
for tool in TOOL_REGISTRY:
    if tool.name == "run":
        tool.setup_parser(sub)
dump("polygraphy", top)
dump("run", sub.choices["run"])
print(json.dumps({"version": polygraphy.__version__, "options": out}))
"""


def polygraphy_options(src: Path) -> dict:
    """The options of `polygraphy` and `polygraphy run` as the sources in `src` build them."""
    main = (src / "polygraphy" / "tools" / "_main.py").read_text()
    if not re.search(r'"--version",\s*action="version"', main):
        raise SystemExit(f"{src}: tools/_main.py adds no --version action: read it and fix _DUMP")
    done = subprocess.run([sys.executable, "-c", _DUMP, str(src)], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{src}: building polygraphy run's parser failed: {done.stderr.strip()[-800:]}")
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "mark_all": mark_all_values(src)}


def mark_all_values(src: Path) -> str:
    """The values of `--onnx-outputs` / `--trt-outputs` that mean every tensor, as `get_outputs` in
    tools/args/util/util.py reads them, with any deprecation."""
    text = (src / "polygraphy" / "tools" / "args" / "util" / "util.py").read_text()
    m = re.search(r"def get_outputs\(args, name\):\n(.*?)\n\n", text, re.S)
    if m is None:
        raise SystemExit(f"{src}: get_outputs not found in tools/args/util/util.py: read it and fix this script")
    body = m.group(1)
    values = []
    if re.search(r'\[0\] == "\*"', body):
        values.append("*")
    if re.search(r'== \["mark", "all"\]|\[0\] == "mark" and \w+\[1:\] == \["all"\]', body):
        gone = re.search(r"warn_deprecated\(\s*\"'mark all'\",\s*\"'\*'\",\s*remove_in=\"([^\"]+)\"", body)
        values.append("mark all" + (f" (deprecated: removed in {gone.group(1)})" if gone else ""))
    if not values or "MARK_ALL" not in body:
        raise SystemExit(f"{src}: get_outputs reads 'every tensor' in a way this script does not know")
    return " | ".join(values)


def polygraphy_list(found: dict, head: list[str]) -> list[str]:
    rows = []
    for where, spellings, action, nargs, choices, group in found["options"]:
        rows.append("\t".join([where, " ".join(spellings), action, "" if nargs is None else str(nargs),
                               ",".join(map(str, choices)), group]))
    return head + [f"# version: {found['version']}", f"# every tensor (--onnx-outputs): {found['mark_all']}",
                   f"# options: {len(rows)}",
                   "# command<TAB>spellings<TAB>action<TAB>nargs<TAB>choices<TAB>argument group"] + sorted(rows)


def polygraphy_from_repo(repo: Path, tag: str, work: Path) -> tuple[str, Path] | None:
    init = show(repo, tag, "tools/Polygraphy/polygraphy/__init__.py")
    if init is None:
        return None
    version = re.search(r'__version__\s*=\s*"([^"]+)"', init).group(1)
    dest = work / f"repo-{tag}"
    if not dest.exists():
        data = subprocess.run(["git", "-C", str(repo), "archive", tag, "tools/Polygraphy/polygraphy"],
                              check=True, capture_output=True).stdout
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            tar.extractall(dest, filter="data")
    return version, dest / "tools" / "Polygraphy"


def polygraphy_wheel(version: str, work: Path) -> tuple[Path, Path]:
    dest = work / f"wheel-{version}"
    dest.mkdir(parents=True, exist_ok=True)
    if not list(dest.glob("*.whl")):
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", f"polygraphy=={version}", "-d", str(dest)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"polygraphy {version}: {(done.stderr or done.stdout).strip().splitlines()[-1:]}")
    wheel = sorted(dest.glob("*.whl"))[0]
    src = dest / "src"
    if not src.exists():
        with zipfile.ZipFile(wheel) as z:
            z.extractall(src)
    return wheel, src


# -- debug-tensor files ------------------------------------------------------------------------------------------
def _one(pattern: str, text: str, what: str, tag: str, flags: int = 0) -> re.Match:
    m = re.search(pattern, text, flags)
    if m is None:
        raise SystemExit(f"{tag}: {what} not found where expected: read the file and fix this script")
    return m


def _body(text: str, start: str) -> str:
    """The text of the function whose definition line starts with `start`, to its closing brace at column 0."""
    i = text.find(start)
    if i < 0:
        return ""
    j = text.find("\n}\n", i)
    return text[i:j if j > 0 else len(text)]


def debug_tensor_facts(repo: Path, tag: str) -> list[str] | None:
    writer = show(repo, tag, WRITER)
    if writer is None:
        return None
    common = show(repo, tag, COMMON_H) or ""
    safe = _body(common, "[[nodiscard]] inline std::string genFilenameSafeString")
    if not safe:
        raise SystemExit(f"{tag}: genFilenameSafeString not found in {COMMON_H}")
    facts = [("allowed_punctuation", _one(r'kALLOWED\{"([^"]*)"\}', safe, "kALLOWED", tag).group(1)),
             ("alnum_test", "std::isalnum(static_cast<unsigned char>(c))" if
              "std::isalnum(static_cast<unsigned char>(c))" in safe else "other"),
             ("replacement", _one(r"\?\s*c\s*:\s*'(.)'", safe, "the replacement character", tag).group(1))]
    limit = re.search(r"kMAX_FILENAME_LENGTH\s*=\s*(\d+)", safe)
    if limit:
        ellipsis = _one(r'res \+= "([^"]+)"', safe, "the ellipsis", tag).group(1)
        half = _one(r"halfLength\s*=\s*\(([^;]+)\)\s*/\s*(\d+)", safe, "halfLength", tag)
        if half.group(1).replace(" ", "") != "kMAX_FILENAME_LENGTH-kELLIPSIS_LENGTH":
            raise SystemExit(f"{tag}: halfLength is ({half.group(1)}) / {half.group(2)}: read it and fix this script")
        facts += [("max_length", limit.group(1)), ("ellipsis", ellipsis),
                  ("half_length", str((int(limit.group(1)) - len(ellipsis)) // int(half.group(2))))]
    else:
        facts.append(("max_length", "none"))
    prefix = _one(r"ss << std::setw\((\d+)\) << std::setfill\('(.)'\) << mTensorIndex << \"(.)\";", writer,
                  "the index prefix", tag)
    facts += [("index_width", prefix.group(1)), ("index_fill", prefix.group(2)), ("index_separator", prefix.group(3)),
              ("index_counts", "every callback" if re.search(r"mTensorIndex\+\+;\s*return true;", writer)
               else "other")]
    numpy_fn = _body(writer, "std::string writeNumpy(")
    if re.search(r"std::string fileName = genFilenameSafeString\(prefix \+ name\);", numpy_fn):
        order = "prefix+name made safe, then suffix and .npy appended"
    elif re.search(r'fileName \+= "\.npy";\s*fileName = genFilenameSafeString\(fileName\);', numpy_fn):
        order = "prefix+name+suffix+.npy made safe whole"
    else:
        raise SystemExit(f"{tag}: writeNumpy names its file in a way this script does not know")
    facts += [("numpy_name", order), ("numpy_extension", _one(r'fileName \+= "(\.npy)";', numpy_fn, ".npy", tag)
                                      .group(1))]
    lambdas = {}
    for lam in ("convertToFloat", "convertToInt8"):
        body = _one(rf"auto {lam} = \[&\]\([^)]*\) \{{(.*?)\n    \}};", numpy_fn, lam, tag, re.S).group(1)
        lambdas[lam] = (_one(r'dtype = "([^"]+)"', body, f"{lam}'s dtype", tag).group(1),
                        _one(r'fileName \+= "([^"]+)"', body, f"{lam}'s suffix", tag).group(1))
    switch = numpy_fn[numpy_fn.find("switch (type)"):]
    for m in re.finditer(r"case nvinfer1::DataType::k(\w+):(.*?)(?=case nvinfer1::DataType::k|\n    \}\n)", switch,
                         re.S):
        kind, arm = m.group(1), m.group(2)
        direct = re.search(r'dtype = "([^"]+)"', arm)
        conv = next((lam for lam in lambdas if f"{lam}(" in arm), None)
        if direct:
            facts.append((f"numpy_dtype {kind}", f"{direct.group(1)} (no suffix)"))
        elif conv:
            facts.append((f"numpy_dtype {kind}", f"{lambdas[conv][0]} suffix {lambdas[conv][1]}"
                          + (" (where CUDA_VERSION allows)" if "#if CUDA_VERSION" in arm else "")))
        elif 'return "";' in arm:
            facts.append((f"numpy_dtype {kind}", "not written"))
        else:
            raise SystemExit(f"{tag}: writeNumpy's case k{kind} does something this script does not know")
    header = _one(r'header << "(\{\'descr\': \'" << dtype << "\', \'fortran_order\': False, \'shape\': \()";', writer,
                  "the .npy header", tag).group(1)
    version = _one(r"char version\[\] = \{'\\x(\d\d)', '\\x(\d\d)'\};", writer, "the .npy version", tag)
    facts += [("npy_version", f"{int(version.group(1))}.{int(version.group(2))}"),
              ("npy_header", header.replace('" << dtype << "', "<dtype>"))]
    names = _body(writer, "std::string getDataTypeString(") or writer
    for m in re.finditer(r'case nvinfer1::DataType::k(\w+): return "(\w+)";', names):
        facts.append((f"type_name k{m.group(1)}", m.group(2)))
    ctor = _body(writer, "DebugTensorWriter::DebugTensorWriter(")
    facts.append(("summary_file", _one(r'mSummaryFileName = "([^"]+)";', ctor, "the summary file", tag).group(1)))
    facts.append(("summary_when", 'the format list holds "summary"' if '"summary"' in ctor else "other"))
    keys = []
    for fn in ("void DebugTensorWriter::writeSummaryHeader(", "void DebugTensorWriter::writeSummary("):
        keys += re.findall(r'\\"(\w+)\\":', _body(writer, fn))
    facts.append(("summary_keys", " ".join(dict.fromkeys(keys))))
    written = _one(r'"\s*\\"name\\": \\"" << ([^<]+?) <<', _body(writer, "void DebugTensorWriter::writeSummary("),
                   "the summary's name", tag).group(1)
    facts.append(("summary_name", "written as it is" if written == "name" else f"written through {written}"))
    head = source_header(repo, tag, [WRITER, COMMON_H]) + [f"# version: {trt_version(repo, tag)}",
                                                            "# fact<TAB>value"]
    return head + [f"{k}\t{v}" for k, v in facts]


def accuracy_facts(repo: Path, tag: str) -> list[str] | None:
    inference, utils, header = (show(repo, tag, p) for p in (INFERENCE, UTILS, SAMPLE_OPTIONS_H))
    if not inference or "accuracyThresholdEndToEnd" not in inference:
        return None
    l0 = _one(r"double L0AccuracyValidator<T>::calculateAccuracy\(.*?\n\}", utils or "", "the L0 validator", tag,
              re.S).group(0)
    element = _one(r"double const tolerance = (.+?);\s*if \((\w+) (>=?) tolerance\)", l0, "the L0 element test", tag,
                   re.S)
    share = _one(r"return static_cast<double>\((\w+)\) / (\w+)\.size\(\);", l0, "the L0 share", tag)
    fail = _one(r"accuracy (>=?) inference\.accuracyThresholdEndToEnd", inference, "the threshold test", tag)
    facts = [("l0_tolerance", " ".join(element.group(1).split())),
             ("l0_beyond", f"absDiff {element.group(3)} tolerance (in double)"),
             ("l0_share", f"{share.group(1)} / {share.group(2)}.size() (double)"),
             ("fails_when", f"accuracy {fail.group(1)} threshold")]
    for field_name in ("atol", "rtol", "accuracyThresholdEndToEnd"):
        m = _one(rf"^\s*(\w+) {field_name}\{{", header or "", f"the type of {field_name}", tag, re.M)
        facts.append((f"type {field_name}", m.group(1)))
    head = source_header(repo, tag, [INFERENCE, UTILS, SAMPLE_OPTIONS_H]) + ["# fact<TAB>value"]
    return head + [f"{k}\t{v}" for k, v in facts]


# -- writing -----------------------------------------------------------------------------------------------------
def write(path: Path, lines: list[str], *, compress: bool) -> Path:
    from cp_debug.files import write_bytes_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    data = ("\n".join(lines) + "\n").encode()
    write_bytes_atomic(path, gzip.compress(data, mtime=0) if compress else data)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", type=Path, required=True, help="a clone of github.com/NVIDIA/TensorRT (bare or not)")
    ap.add_argument("--tags", nargs="+", default=None, help="default: every v10.* and v11.* release tag")
    ap.add_argument("--polygraphy", nargs="+", default=list(POLYGRAPHY_WHEELS), help="PyPI versions to download")
    ap.add_argument("--work", type=Path, default=None, help="download and extraction folder (default: temporary)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        poly_seen = set()
        for tag in args.tags or tags(args.repo):
            lines, version = trtexec_list(args.repo, tag)
            path = write(args.out / "trtexec" / f"{tag}.txt.gz", lines, compress=True)
            print(f"{tag} ({version}): {len(lines)} lines -> {path}")
            for kind, facts in (("debug_tensors", debug_tensor_facts(args.repo, tag)),
                                ("accuracy", accuracy_facts(args.repo, tag))):
                if facts is not None:
                    print(f"  {kind}: {write(args.out / kind / f'{tag}.txt', facts, compress=False)}")
            found = polygraphy_from_repo(args.repo, tag, work)
            if found is not None and found[0] not in poly_seen:
                poly_seen.add(found[0])
                options = polygraphy_options(found[1])
                head = source_header(args.repo, tag, ["tools/Polygraphy/polygraphy/__init__.py"])
                path = write(args.out / "polygraphy" / f"{options['version']}.txt.gz",
                             polygraphy_list(options, head), compress=True)
                print(f"  polygraphy {options['version']} (in the repository): {path}")
        for version in args.polygraphy:
            wheel, src = polygraphy_wheel(version, work)
            options = polygraphy_options(src)
            if options["version"] != version:
                raise SystemExit(f"{wheel.name} holds polygraphy {options['version']}, not {version}")
            sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
            head = [f"# source: {wheel.name} (PyPI)", f"# sha256: {sha}"]
            path = write(args.out / "polygraphy" / f"{version}.txt.gz", polygraphy_list(options, head), compress=True)
            print(f"polygraphy {version} ({wheel.name}): {path}")


if __name__ == "__main__":
    main()
