"""Options given that would do nothing, refused in one line (issue 117): a repeated option that takes one value (a
second `--inputs` silently replaced the first, click keeping the last; options declared to repeat, a list such as
trt-kit's `--inputs`, and flags are left as they are; nothing after `--` is read), and a built-in recipe's option
given with `--torch` / `--onnx` (`RECIPE_ONLY`)."""

from __future__ import annotations

from cp_debug.errors import BadInputError

# what to do instead, where the option has a way to take several
_INSTEAD = {"--inputs": "several samples: a folder of .npz files, one sample each",
            "--backends": "several candidates: one comma-separated list, reference first (-b ort,ort-cpu-fp16,…)"}


def refuse_repeated(command, args: list[str]) -> None:
    """`args` of click command `command` (typer's own click: options known by their kind's name): an option taking
    one value given twice or more, said in one line (exit 2) naming the values given."""
    single: dict[str, str] = {}  # each spelling -> the option's longest spelling
    for p in command.params:
        if getattr(p, "param_type_name", None) == "option" and not (p.multiple or p.is_flag or p.count) \
                and p.nargs == 1:
            name = max(p.opts, key=len)
            single.update({o: name for o in p.opts})
    seen: dict[str, list[str]] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            break
        flag, eq, value = arg.partition("=")
        if flag in single:
            if not eq:
                value = args[i + 1] if i + 1 < len(args) else ""
                i += 1
            seen.setdefault(single[flag], []).append(value)
        i += 1
    for name, values in seen.items():
        if len(values) > 1:
            instead = _INSTEAD.get(name)
            raise BadInputError(f"{name} given {len(values)} times ({', '.join(values)}): it takes one value, give it "
                                f"once" + (f" ({instead})" if instead else ""))


_CENTERPOINT = ("--preset", "--checkpoint", "--random-weights", "--cudnn-algo")
RECIPE_ONLY = {
    "bisect": (*_CENTERPOINT, "--points", "--pictures"),
    "sweep": (*_CENTERPOINT, "--data-root", "--lidar-topic", "--n", "--ray-workers", "--ray-cpus-per-worker",
              "--bootstrap", "--calib-n", "--match-distance"),
    "eval": (*_CENTERPOINT, "--data-root", "--n", "--calib-n", "--match-distance"),
    # fix of one graph (`cli/common/fix_graph.py`) refuses --preset, --config, --scenes, --n, … itself
    "fix": ("--random-weights", "--data-root", "--first-scene", "--device", "--max-map-drop", "--max-lost-boxes",
            "--tolerance-mode", "--worst-frames", "--calib-n", "--method", "--percentile", "--junit", "--budget",
            "--bootstrap"),
}
"""Per command, the options a built-in recipe's run reads and a `--torch` / `--onnx` run does not (a LiDAR
detector's weights, scans, boxes and pictures): given with either, refused in one line (issue 117: `bisect --onnx
… --points F --pictures P` ran and used neither). The commands' own `others` refuse the rest (--config, --scenes,
--int8, …) with their words."""


def refuse_recipe_only(name: str, ctx) -> None:
    """Command `name`'s recipe-only options (`RECIPE_ONLY`) typed with `--torch` / `--onnx`: one line (exit 2)."""
    names = RECIPE_ONLY.get(name)
    if not names:
        return
    given = _given(ctx)
    if not ({"--torch", "--onnx"} & given):
        return
    unused = [o for o in names if o in given and not (o == "--n" and "--generate" in given)]  # seeded prompts
    if unused:
        raise BadInputError(f"{', '.join(unused)}: not with --torch / --onnx (the built-in recipes' options; "
                            "a model's samples: --inputs or --data)")


def _given(ctx) -> set[str]:
    """The long spellings of the options typed (command line or environment: click's parameter source)."""
    given = set()
    for p in ctx.command.params:
        if getattr(p, "param_type_name", None) != "option":
            continue
        source = ctx.get_parameter_source(p.name)
        if source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP"):
            given.add(max(p.opts, key=len))
    return given
