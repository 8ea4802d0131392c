"""Say what runs: a command given no option that names a model falls back to the built-in demo (CenterPoint preset
`demo`) and says so in its first line, on stderr, even with --quiet (a notice, not progress), and in its JSON
(`runs_on`). `cpdebug fix --backends torch,ort-cpu-fp16 --out fix/` fixed the demo for 43 s and never named it
(issue 85). The line comes with the command's first progress step or bar, so a request refused before any work is
still one line (the error's).

`saying_what_runs(ctx)` runs every command (`app._Command.invoke`): after click parsed the command line and
before the command's body: an option counts as given when its value came from the command line or the environment
(click's `ParameterSource`), so `--preset demo` typed out is a model named, and says nothing.
"""

from __future__ import annotations

import contextlib
import sys
from contextvars import ContextVar
from pathlib import Path

FALLS_BACK = frozenset({"bisect", "sweep", "fix", "keep-fp32", "quantize", "sensitivity", "eval", "bench",
                        "export", "infer", "trt-kit", "scenes", "train"})
"""The commands that run a built-in demo when no model is named (keep-fp32: with --recipe transfusion alone); a test
walks every command with a model option. `replay` says it itself, with why it matters there ("the model is the
built-in demo preset … give the deployed model"), after the recording is read: a bag refused is one line."""
SAYS_ITSELF = frozenset({"replay"})

NAMING = ("--recipe", "--preset", "--config", "--model-factory", "--torch", "--onnx", "--int8", "--onnx-dir",
          "--fix", "--from-bisect", "--from-sweep", "--check")
"""The options that name the model a command runs (or a report or folder it comes from); --checkpoint alone gives
the demo's architecture other weights, so the notice still names the demo."""

WEIGHTS = ("--checkpoint", "--random-weights")
_RUNS_ON: ContextVar[dict | None] = ContextVar("cp_debug_runs_on", default=None)
_PENDING: ContextVar[list[str] | None] = ContextVar("cp_debug_demo_line", default=None)
_RAN = (0, 1, 4, 5)  # exit codes of a run that did its work (within precision, diverged, degraded, not verified)
DEMO = "CenterPoint preset demo (awml-base modules on a small 320x320 grid)"
_ASK_FOR = ("--config", "--preset", "--torch", "--onnx")  # the ways to name a model, as the notice suggests them


def _long(param) -> str:
    return max(param.opts, key=len)


def _given(ctx, names) -> list[tuple[str, object]]:
    """(option, value) of each option of `names` the user gave (command line or environment), in `names`' order."""
    by_name = {_long(p): p for p in ctx.command.params if p.param_type_name == "option"}
    given = []
    for option in names:
        param = by_name.get(option)
        if param is None:
            continue
        source = ctx.get_parameter_source(param.name)
        value = ctx.params.get(param.name)
        # by the source's name: typer >= 0.2x has its own copy of click, whose enum is not click's
        if source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP") and value not in (None, False, [], ()):
            given.append((option, value))
    return given


def _words(given: list[tuple[str, object]]) -> str:
    """The options as typed: `--config cfg.py --checkpoint ckpt.pth`, a flag alone."""
    parts = []
    for option, value in given:
        values = value if isinstance(value, (list, tuple)) else [value]
        parts += [option] if value is True else [f"{option} {v}" for v in values]
    return " ".join(parts)


_VERB = {"scenes": "makes scenes for", "train": "trains"}  # the others run the model; these take no weights


def demo_of(recipe: str | None) -> str | None:
    """The demo model of built-in recipe `recipe` in words (None: the default recipe's, CenterPoint's); None where
    `recipe` names no built-in recipe (an AWML config file given as --recipe is a model named)."""
    from cp_debug.recipes import catalog

    if recipe is None or recipe == catalog.DEFAULT:
        return DEMO
    if recipe not in catalog.built_in():
        return None
    r = catalog.recipe(recipe)
    return f"{r.title} preset {r.default_preset}"


def demo_text(weights: list[tuple[str, object]] | None, demo: str = DEMO) -> str:
    """What the demo run is, said in one clause: the preset and its weights (None: a command that takes none)."""
    if weights is None:
        return f"the built-in demo, {demo}"
    said = dict(weights)
    if said.get("--checkpoint") is not None:
        how = f"the weights of {said['--checkpoint']}"
    elif said.get("--random-weights"):
        how = "seeded random weights"
    else:
        how = "its shipped trained weights"
    return f"the built-in demo, {demo}, with {how}"


def what_runs(ctx) -> tuple[dict | None, str | None]:
    """For a command of `FALLS_BACK`: the record of what it runs (`runs_on`: `given`, `text`) and, where no model is
    named, the line that says the demo runs and how to name one (else None). (None, None) for the other commands."""
    name = ctx.command.name
    if name not in FALLS_BACK:
        return None, None
    given = _given(ctx, NAMING)
    reference = str(ctx.params.get("backends") or "").split(",")[0]
    if not given and "@" in reference:
        from cp_debug.backends.kit.kit_files import is_kit

        if is_kit(Path(reference.split("@", 1)[1])):  # two targets' results compared: the kits' own file
            return {"given": True, "text": f"the file of the kit of {reference}"}, None
    recipe = dict(given).get("--recipe")
    demo = demo_of(recipe) if given in ([], [("--recipe", recipe)]) else None  # a recipe alone runs its demo
    if demo is None:
        return {"given": True, "text": _words(given + _given(ctx, WEIGHTS))}, None
    text = demo_text(None if name in _VERB else _given(ctx, WEIGHTS), demo)
    options = {_long(p) for p in ctx.command.params if p.param_type_name == "option"}
    ways = [o for o in _ASK_FOR if o in options]
    ways = " or ".join([", ".join(ways[:-1]), ways[-1]] if len(ways) > 1 else ways)
    line = f"cpdebug: no model given: {name} {_VERB.get(name, 'runs')} {text}; name yours with {ways}"
    return {"given": False, "text": f"{text} (no model given)"}, line


@contextlib.contextmanager
def saying_what_runs(ctx):
    """The command of `ctx` run inside, its record kept for its JSON (`runs_on()`) in a context variable (a server
    runs commands one per thread). The demo's line waits for the command's work: its first progress step or bar
    says it (`say_what_runs`), so that a request refused before any work stays one line; a command that ends
    without either says it as it ends, an error excepted."""
    record, line = what_runs(ctx)
    token = _RUNS_ON.set(record)
    pending = _PENDING.set([line] if line else [])
    try:
        yield
    except Exception as done:
        import typer

        if isinstance(done, typer.Exit) and done.exit_code in _RAN:
            say_what_runs()
        raise
    else:
        say_what_runs()
    finally:
        _PENDING.reset(pending)
        _RUNS_ON.reset(token)


def say_what_runs(stream=None) -> None:
    """The demo's line, once, on `stream` (stderr; a command's `ThirdParty.terminal` while it captures fd 2), even
    with --quiet; nothing where a model was named or the line was said."""
    pending = _PENDING.get() or []
    while pending:
        print(pending.pop(), file=stream or sys.stderr, flush=True)


def runs_on() -> dict | None:
    """The `runs_on` record of the command that runs (None outside a command, or for a command not in
    `FALLS_BACK`)."""
    return _RUNS_ON.get()
