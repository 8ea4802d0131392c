"""`cpdebug scenes`: write synthetic LiDAR scenes with ground truth (point files + an mmdet3d info .pkl)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from cp_debug.cli.common.options import ConfigFile, Preset, Quiet, Verbose, model_record, option
from cp_debug.cli.common.quiet import ThirdParty


def scenes(
    out: Annotated[Path, option("--out", help="Output folder: points/<token>.pcd.bin and infos.pkl.")],
    n: Annotated[int, option("--n", help="Number of scenes.")] = 200,
    preset: Preset = "demo",
    config: ConfigFile = None,
    seed: Annotated[int, option("--seed", help="First scene seed; scenes use seeds SEED..SEED+N-1 (training seeds, "
                                               "disjoint from the held-out ones).")] = 0,
    workers: Annotated[int, option("--workers", help="Processes generating scenes.")] = 1,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Generate N whole scenes (ground, clutter, five classes) as a spinning LiDAR sees them, with GT boxes."""
    with ThirdParty(verbose=verbose) as third_party:
        preset = model_record(preset, config).model_name
        _scenes(out, n, preset, seed, workers, quiet, third_party)


def _scenes(out: Path, n: int, preset: str, seed: int, workers: int, quiet: bool, third_party) -> None:
    from cp_debug.cli.common.bar import progress_bar
    from cp_debug.cli.common.output import stdout_console
    from cp_debug.data.scene_set import write_scene_set
    from cp_debug.data.scenes import training_seeds
    from cp_debug.errors import BadInputError
    from cp_debug.recipes.catalog import recipe

    cfg = recipe().config(preset)  # the scenes are the default recipe's (CenterPoint's) preset's
    seeds = training_seeds(n, seed)
    if workers < 1:
        raise BadInputError(f"--workers must be at least 1, got {workers}")
    if out.exists() and not out.is_dir():
        raise BadInputError(f"--out {out} exists and is not a folder")
    with progress_bar(f"scenes ({preset})", n, quiet, third_party.terminal) as advance:
        info = write_scene_set(cfg, out, seeds, workers=workers, on_scene=lambda i: advance())
    if not quiet:
        print(f"wrote {n} scenes to {out} ({info.name})")
    third_party.print_count(stdout_console(), where=None)
