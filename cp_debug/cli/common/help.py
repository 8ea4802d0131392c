"""Help pages, written once for every command: each option in its group's panel (the groups are
cli/common/options.py's),
two examples and the exit codes of each command (in one format, in the order of the codes), and metavars that say
what goes after an option.

Every help text is shown through rich markup, which takes `[word]` for a style and drops it (`'cp-debug[rerun]'`
showed as `'cp-debug'`): `polish` escapes every text once here, so the texts themselves are written plainly.
"""

from __future__ import annotations

from cp_debug.cli.common.options import GROUPS, PANEL_OF, SEARCH

# -- an option not in a group (cli/common/options.py GROUPS) is one of the command's own, in the command's own panel
# ------
OWN_PANEL = {
    "sweep": "Sweep", "extract": "Bundle", "fix": "Fix: where to start", "keep-fp32": SEARCH,
    "sensitivity": SEARCH, "replay": "Replay", "bench": "Timing", "export": "Head outputs", "infer": "Head outputs",
    "trt-kit": "Kit", "train": "Training", "serve": "Server", "eval": "Evaluation",
}

# -- command groups of `cpdebug --help` ---------------------------------------------------------------------------
FIND = "Find the divergence"
FIX = "Fix it"
DETECTIONS = "Does it change detections"
DEPLOY = "Deploy"
DATA = "Data and the demo"
MACHINE = "This machine"

GROUP = {
    "bisect": FIND, "sweep": FIND, "report": FIND, "extract": FIND,
    "fix": FIX, "keep-fp32": FIX, "quantize": FIX, "sensitivity": FIX,
    "eval": DETECTIONS, "replay": DETECTIONS, "bench": DETECTIONS,
    "lint": DEPLOY, "export": DEPLOY, "infer": DEPLOY, "trt-kit": DEPLOY,
    "scenes": DATA, "train": DATA,
    "backends": MACHINE, "serve": MACHINE,
}

# -- two examples a command: the first the plain case, the second one that shows what the command is for (a third:
# the same for any model, --torch / --onnx, where the command takes one) -------------------------------------------
EXAMPLES = {
    "bisect": ("cpdebug bisect --backends torch,ort-cpu-fp16 --json run.json",
               "cpdebug bisect --config cfg.py --checkpoint ckpt.pth --backends torch,ort-cpu-fp16@deploy/ "
               "--points scan.pcd.bin --html run.html",
               "cpdebug bisect --torch net.py:build --inputs sample.npz --backends torch,ort-cpu-fp16 --json run.json"),
    "sweep": ("cpdebug sweep --backends torch,ort-cpu-fp16 --n 50 --out sweep/",
              "cpdebug sweep --config cfg.py --checkpoint ckpt.pth --backends torch,ort-cpu-fp16@deploy/ "
              "--scenes infos.pkl --out sweep/ --junit sweep.xml",
              "cpdebug sweep --onnx model.onnx --inputs samples/ --backends ort-cpu,ort-cpu-fp16 --out sweep/"),
    "report": ("cpdebug report run.json",
               "cpdebug report run.json --html run.html --csv run.csv"),
    "extract": ("cpdebug extract run.json --bundle bug/",
                "cpdebug extract run.json --candidate ort-cpu-fp16 --bundle bug/"),
    "fix": ("cpdebug fix --backends torch,ort-cpu-fp16 --out fix/",
            "cpdebug fix --int8 ptq/ --backends torch,ort-cpu-int8 --max-map-drop 0.05 --out fix8/ "
            "&& cpdebug fix --check fix8/"),
    "keep-fp32": ("cpdebug keep-fp32 --onnx model.onnx --inputs x.npz",
                  "cpdebug keep-fp32 --torch my_model.py:build --backends ort-cpu-fp16 --json keep.json"),
    "quantize": ("cpdebug quantize --preset tiny --calib-n 4 --method max --out ptq/",
                 "cpdebug quantize --config cfg.py --checkpoint ckpt.pth --calib infos.pkl --out ptq/"),
    "sensitivity": ("cpdebug sensitivity --preset tiny --calib-n 4 --method max",
                    "cpdebug sensitivity --preset tiny --calib-n 4 --method max --search"),
    "eval": ("cpdebug eval --backends torch,ort,ort-cpu-fp16 --n 50 --json e.json",
             "cpdebug eval --backends torch --scenes scenes/ --detections results.json"),
    "replay": ("cpdebug replay recording/ --config cfg.py --checkpoint ckpt.pth --min-match 0.95",
               "cpdebug replay --cuda-centerpoint pred/ --scenes infos.pkl"),
    "bench": ("cpdebug bench --backends torch,ort,ort-cpu-fp16",
              "cpdebug bench --backends torch,ort-cpu-fp16 --repeat 20 --warmup 3 --json b.json"),
    "lint": ("cpdebug lint --config cfg.py --onnx-dir deploy/",
             "cpdebug lint --config cfg.py --params ml_package.param.yaml --onnx-dir deploy/ --scenes infos.pkl "
             "--junit lint.xml"),
    "export": ("cpdebug export --out onnx/",
               "cpdebug export --preset awml-base --checkpoint ckpt.pth --out onnx/"),
    "infer": ("cpdebug infer --out out.npz",
              "cpdebug infer --preset awml-base --checkpoint ckpt.pth --points scan.npz --out out.npz"),
    "trt-kit": ("cpdebug trt-kit --preset demo --n 4 --out kit/",
                "cpdebug trt-kit --onnx model.onnx --inputs a.npz --inputs b.npz --max-shapes x:8x3x224x224 "
                "--min-shapes x:1x3x224x224 --out kit/"),
    "scenes": ("cpdebug scenes --n 200 --out scenes/",
               "cpdebug scenes --n 200 --out scenes/ --preset demo --seed 0 --workers 8"),
    "train": ("cpdebug train --preset demo --scenes scenes/ --out ckpt.pth --steps 200",
              "cpdebug train --recipe transfusion --preset transfusion-demo --scenes scenes/ --out tf.pth "
              "--device cuda --half"),
    "backends": ("cpdebug backends",
                 "cpdebug backends --json"),
    "serve": ("cpdebug serve",
              "cpdebug serve --status"),
}

# -- exit codes: what each code means for a command; 2, 70, 130 and 141 are every command's ------------------------
_FIXED = "--tolerance-mode fixed"
_BUDGET = "with --budget the budget decides: 1 a limit broken, 0 all hold"
_BACKEND = "a backend cannot run here, or failed to build or run"
_INCONCLUSIVE = "inconclusive: the reference's own two runs differ beyond the candidate's budget (no verdict)"
CODES: dict[str, dict[int, str]] = {
    "bisect": {0: f"within precision ({_FIXED}: within tolerance)",
               1: "diverged: a local fault, NaN/Inf, a shape mix-up (fixed: a probe beyond tolerance)",
               3: _BACKEND, 4: "degraded: beyond the precision's noise, no local fault",
               6: _INCONCLUSIVE},
    "sweep": {0: f"every frame within precision ({_FIXED}: no frame diverges)",
              1: "a frame diverged (a layer-local fault, NaN/Inf) or failed", 3: _BACKEND,
              4: "degraded: beyond the precision's noise, or boxes change beyond it, on some frame",
              6: _INCONCLUSIVE + " (on some frame's bisect)"},
    "eval": {0: "every candidate within precision and every gate holds (--tolerance-mode fixed: done)",
             1: "a candidate diverged, or a gate (--max-map-drop, --max-nds-drop, --min-match) broken",
             3: "a backend or nuscenes-devkit cannot run here", 4: "a candidate degraded"},
    "fix": {0: "written and verified (or --check holds), or nothing to fix",
            1: "no set meets the target (nothing written)", 3: _BACKEND,
            5: "written but its verification fails (or --check does not hold)"},
    "keep-fp32": {0: "a set was found (or none is needed)", 1: "even every candidate in FP32 fails", 3: _BACKEND,
                  5: "--recipe transfusion: the set's graph does not hold on the verification's frames"},
    "sensitivity": {0: "done (a set was found or none is needed)", 1: "--search found no passing set",
                    3: _BACKEND},
    "replay": {0: "done (and --min-match holds)", 1: "--min-match broken",
               3: "a library (rosbags) or --device cuda is missing"},
    "lint": {0: "consistent", 1: "a mismatch (each named with both values and where each came from)"},
    "report": {0: "rendered"},
    "extract": {0: "the bundle is written", 3: _BACKEND},
    "bench": {0: "done", 3: _BACKEND},
    "quantize": {0: "written", 3: _BACKEND},
    "export": {0: "written", 3: _BACKEND},
    "infer": {0: "written", 3: _BACKEND},
    "trt-kit": {0: "the kit is written", 3: _BACKEND},
    "train": {0: "trained and written", 3: "--device cuda and torch sees no CUDA device"},
    "scenes": {0: "written"},
    "backends": {0: "listed"},
    "serve": {0: "done (started, stopped, or the status said)"},
}
_EVERY = {2: "bad input or usage (one line: what is wrong, what to do)", 70: "a bug of cp_debug",
          130: "interrupted", 141: "the output's reader went away"}
_BUDGETED = ("bisect", "sweep", "eval", "fix")


# -- deprecated spellings: accepted, with one line on stderr naming the new one (docs/terms.md lists them) ------------
def _count(value: str | None) -> bool:
    return value is not None and value.strip().isdigit()


def _no_value(value: str | None) -> bool:
    return value is None or value.startswith("-")


_COUNT = "one name for a frame count: --n, or --ROLE-n"
_RMSE = "a rel. RMSE target, not an element-wise tolerance: --atol/--rtol are those"
_EXCLUDE = "what is left out of INT8 is --exclude-int8 in every command"
_SEARCH = "a candidate is a backend judged; these are the nodes the search may change"
_CONVT = "one name for the ConvTranspose mode"
DEPRECATED: dict[tuple[str, str], tuple] = {
    # (command, old): (new, why[, test of the value after it: the old spelling only where it holds; new "" drops it;
    # a new of two words, a flag's option and its value, stands for the old flag])
    ("sweep", "--calib-scenes"): ("--calib-n", "a count here, a path in quantize and sensitivity"),
    ("eval", "--calib-scenes"): ("--calib-n", "a count here, a path in quantize and sensitivity"),
    ("quantize", "--calib-scenes"): ("--calib", "what to calibrate on is --calib in every command"),
    ("sensitivity", "--calib-scenes"): ("--calib", "what to calibrate on is --calib in every command"),
    ("lint", "--onnx"): ("--onnx-dir", "the pair's folder, as trt-kit and infer spell it; --onnx is a file elsewhere"),
    ("keep-fp32", "--backend"): ("--backends", "one name for the backend specs in every command"),
    ("fix", "--tol"): ("--max-rel-rmse", _RMSE),
    ("sensitivity", "--tol"): ("--max-rel-rmse", _RMSE),
    ("sweep", "--html"): ("", "--html is a file in every command; sweep writes OUT/report.html unless --no-html",
                          _no_value),
    ("fix", "--scenes"): ("--n", "--scenes is a path (an info file); " + _COUNT, _count),
    ("fix", "--verify-scenes"): ("--verify-n", _COUNT),
    ("fix", "--verify-samples"): ("--verify-n", _COUNT),
    ("keep-fp32", "--scenes"): ("--n", _COUNT),
    ("keep-fp32", "--verify-scenes"): ("--verify-n", _COUNT),
    ("quantize", "--eval-scenes"): ("--eval-n", _COUNT),
    ("quantize", "--map-scenes"): ("--map-n", _COUNT),
    ("sensitivity", "--eval-scenes"): ("--eval-n", _COUNT),
    ("sensitivity", "--map-scenes"): ("--map-n", _COUNT),
    ("train", "--val-scenes"): ("--val-n", _COUNT),
    ("train", "--synthetic"): ("--n", _COUNT),
    ("replay", "--max-frames"): ("--n", _COUNT),
    ("quantize", "--skip-layers"): ("--exclude-int8", _EXCLUDE),
    ("sensitivity", "--skip-layers"): ("--exclude-int8", _EXCLUDE),
    ("quantize", "--per-tensor-convtranspose"): ("--convtranspose per-tensor", _CONVT),
    ("sensitivity", "--per-tensor-convtranspose"): ("--convtranspose per-tensor", _CONVT),
    ("fix", "--candidates"): ("--search-nodes", _SEARCH),
    ("keep-fp32", "--candidates"): ("--search-nodes", _SEARCH),
}


def renamed(name: str, args: list[str]) -> list[str]:
    """Command `name`'s arguments with each deprecated option spelling replaced by the current one, saying so once
    on stderr (`cpdebug: warning: ...`); the option's behaviour is the same. Nothing after `--` is touched."""
    out = []
    for i, arg in enumerate(args):
        if arg == "--":
            return out + args[i:]
        flag, eq, value = arg.partition("=")
        new = DEPRECATED.get((name, flag))
        if new is not None and len(new) > 2 and not new[2](value if eq else (args[i + 1] if i + 1 < len(args)
                                                                             else None)):
            new = None
        if new is None:
            out.append(arg)
            continue
        import sys

        use = f"use {new[0]}" if new[0] else "drop it"
        print(f"cpdebug: warning: {name} {flag} is deprecated ({new[1]}): {use}", file=sys.stderr)
        if " " in new[0]:  # a flag that was an option's value: --per-tensor-convtranspose
            out.extend(new[0].split())
        elif new[0]:
            out.append(new[0] + eq + value)
    return out


def exit_codes(name: str) -> str:
    """The `Exit codes:` line of command `name`, codes in ascending order, the same on every page."""
    codes = {**_EVERY, **CODES[name]}
    line = "; ".join(f"{code} {codes[code]}" for code in sorted(codes))
    if name in _BUDGETED:
        line += f". {_BUDGET[0].upper()}{_BUDGET[1:]}"
    return f"Exit codes: {line}."


def root_epilog() -> str:
    """The end of `cpdebug --help`: where to start, and every exit code in the format of the commands' pages."""
    codes = {0: "within precision, done, every gate holds", 1: "diverged, or a gate or budget broken",
             3: "a backend cannot run here, or failed", 4: "degraded", 5: "fix written but not verified",
             6: "inconclusive (the reference is not stable)", **_EVERY}
    line = "; ".join(f"{code} {codes[code]}" for code in sorted(codes))
    return ("Examples:\n\n  cpdebug bisect\n\n  cpdebug bisect --backends torch,ort-cpu-fp16@deploy/ --config cfg.py "
            f"--checkpoint ckpt.pth\n\nExit codes: {line}. Each command's page says which it gives.")


def epilog(name: str) -> str:
    """The end of command `name`'s help page: its examples, then its exit codes (docs/exit-codes.md has them all)."""
    examples = "\n\n  ".join(EXAMPLES[name])
    return f"Examples:\n\n  {examples}\n\n{exit_codes(name)}"


def command_settings(name: str) -> dict:
    """typer's `app.command(...)` keyword arguments for command `name`: its group on `cpdebug --help` and its
    epilog."""
    return {"rich_help_panel": GROUP[name], "epilog": epilog(name)}


def polish(command) -> None:
    """Make click command `command`'s help page say what it means: every help text escaped for rich markup, each
    option in its panel (`PANEL_OF`), a metavar that names what goes after each option (FILE, DIR, N, X, or the
    option's own name) where none is given (a flag shows none), and a default given in words (`show_default="demo"`
    where None means "not given") shown as a value is, `[default: demo]`, not click's `[default: (demo)]`."""
    from rich.markup import escape

    if command.help:  # a docstring's paragraphs, each on one line: rich would keep its line breaks
        paragraphs = command.help.split("\n\n")
        command.help = escape("\n\n".join(" ".join(p.split()) for p in paragraphs))
    if command.epilog:
        command.epilog = escape(command.epilog)
    for param in command.params:
        if getattr(param, "help", None):
            param.help = escape(param.help)
        if param.param_type_name == "option" and getattr(param, "rich_help_panel", None) is None:
            param.rich_help_panel = PANEL_OF.get(max(param.opts, key=len)) or OWN_PANEL.get(command.name)
        if isinstance(getattr(param, "show_default", None), str):
            param._get_default_string = _shown(param.show_default)
        if param.param_type_name == "argument":  # its name (REPORT, BAG) says what goes there; no `<path>` beside it
            param.display_type_rich = _no_type
            _usage_name(param)
            _no_type_column(param)
        if param.param_type_name != "option" or param.metavar is not None:
            continue
        param.metavar = "" if param.is_flag or param.count else _metavar(param)
    # the panels in the order of GROUPS (typer shows them in the order of their first option)
    order = [None, OWN_PANEL.get(command.name), *GROUPS]
    command.params.sort(key=lambda p: order.index(getattr(p, "rich_help_panel", None))
                        if getattr(p, "rich_help_panel", None) in order else 0)


_DIR_NAMES = {"bundle", "pictures", "model-explorer", "resume", "from-sweep", "check", "onnx-dir", "fix", "data-root"}
_NAMED = {  # what goes after an option whose type alone does not say it
    "json": "FILE|-", "torch": "FILE.py:FUNC", "preset": "NAME", "recipe": "NAME", "level": "stage|block|layer|all",
    "tolerance-mode": "model|fixed", "use-dim": "N|I,I,…", "keep-fp32": "NODE,NODE…",
    "layers": "LAYER,LAYER…", "candidate": "SPEC",
    "exporter": "auto|dynamo|torchscript", "lockstep-mode": "auto|segments|grouped",
    "device": "cpu|cuda", "method": "max|percentile|entropy|mse",
    "precision": "fp32|fp16|int8", "lidar-topic": "TOPIC", "objects-topic": "TOPIC",
}


def _shown(text: str):
    """typer's `_get_default_string` of an option whose default its page gives in words: those words (an older typer
    that has no such method shows click's `(words)`)."""
    return lambda *_, **__: text


def _usage_name(argument) -> None:
    """The usage line names an argument as the help does: RUN_JSON (required), [BAG] (optional); typer 0.29 wrote a
    required one as `{run_json}`."""
    name = argument.metavar or argument.name.upper()
    argument._usage_display_name = lambda: name if argument.required else f"[{name}]"


def _no_type(ctx) -> None:
    """An argument's type column: empty."""


def _no_type_column(param) -> None:
    """An older typer (0.27 on the GPU machine) fills an argument's type column from its click type's `get_metavar`,
    else `<path>`: a copy of the type whose metavar is empty (the argument's own type object, not a shared one)."""
    import copy

    kind = getattr(param, "type", None)
    if kind is None or hasattr(param, "type_descriptor"):
        return
    param.type = copy.copy(kind)
    param.type.get_metavar = lambda *args, **kwargs: ""


def _metavar(option) -> str:
    """FILE / DIR / PATH for paths, N for whole numbers, X for numbers, the choices, else the option's name in
    capitals (LEVEL). The type comes from typer's descriptor (typer >= 0.2x, which keeps no click type on an
    option) or from click's parameter type (older typer): both are read, whichever the installed typer has."""
    long = max(option.opts, key=len).lstrip("-")
    if long in _NAMED:
        return _NAMED[long]
    kind, choices, path = _kind(option)
    if choices is not None:
        return "|".join(str(getattr(choice, "value", choice)) for choice in choices)
    if path:
        if long in _DIR_NAMES or long.endswith("-dir"):
            return "DIR"
        if long == "out":  # a folder or a file, as the command's help says
            said = (option.help or "").lower()
            return "DIR" if any(w in said for w in ("folder", "directory", " dir ", "dir (")) else "FILE"
        return "PATH" if long in ("scenes", "calib-scenes", "int8") else "FILE"
    if kind is bool:
        return ""
    if kind is int:
        return "N"
    if kind is float:
        return "X"
    return long.upper().replace("-", "_")


def _kind(option) -> tuple[object, tuple | None, bool]:
    """(the Python type of one value, the choices or None, whether it is a path) of an option."""
    from pathlib import PurePath
    from typing import get_args

    desc = getattr(option, "type_descriptor", None)
    if desc is not None:
        kind = get_args(desc.annotation)[0] if desc.is_list else desc.annotation
        path = desc.is_path or (isinstance(kind, type) and issubclass(kind, PurePath))
        return kind, (tuple(desc.choices) if desc.is_choice else None), path
    import click

    t = getattr(option, "type", None)
    if isinstance(t, click.Choice):
        return str, tuple(t.choices), False
    if isinstance(t, (click.Path, click.File)):
        return PurePath, None, True
    kinds = ((click.types.BoolParamType, bool), (click.types.IntParamType, int), (click.types.FloatParamType, float))
    return next((k for cls, k in kinds if isinstance(t, cls)), str), None, False
