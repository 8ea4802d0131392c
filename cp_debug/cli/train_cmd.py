"""`cpdebug train`: train a CenterPoint (or, --recipe transfusion, a TransFusion-L) preset on scenes with ground
truth; an mmengine checkpoint comes out."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import typer

from cp_debug.cli.common.options import (ConfigFile, DataRoot, Preset, Quiet, Recipe, Verbose, model_record, option,
                                   recipe_name)
from cp_debug.cli.common.quiet import ThirdParty


def train(
    out: Annotated[Path, option("--out", help="Checkpoint to write (.pth, mmengine layout).")],
    preset: Preset = "demo",
    config: ConfigFile = None,
    recipe: Recipe = None,
    scenes: Annotated[Optional[Path],
                      option("--scenes", help="Training scenes: a folder from `cpdebug scenes` or "
                                              "an mmdet3d info .pkl.")] = None,
    data_root: DataRoot = None,
    synthetic: Annotated[int,
                         option("--n", help="Instead of --scenes: generate this many training scenes (seeds "
                                            "0..N-1) on the fly.")] = 0,
    steps: Annotated[int, typer.Option(help="Optimizer steps (0: use --epochs).")] = 0,
    epochs: Annotated[float, typer.Option(help="Passes over the scenes when --steps is 0.")] = 20.0,
    batch_size: Annotated[int, typer.Option(help="Scenes per step.")] = 4,
    lr: Annotated[float, typer.Option(help="Peak learning rate of the one-cycle schedule (AdamW).")] = 3e-4,
    device: Annotated[str, option("--device", help="cpu or cuda (mixed precision on cuda).")] = "cpu",
    workers: Annotated[int,
                       option("--workers", help="DataLoader worker processes (scene loading, "
                                                "augmentation, voxelization).")] = 0,
    val_scenes: Annotated[int,
                          typer.Option("--val-n", help="Held-out frames for the final nuScenes "
                                            "center-distance mAP (0: none).")] = 50,
    val_every: Annotated[int, typer.Option(help="Also validate every this many steps (0: only at the end).")] = 0,
    half: Annotated[bool,
                    typer.Option(help="Store the checkpoint's tensors in float16 (half the "
                                      "size; loads as float32).")] = False,
    log: Annotated[Optional[Path],
                   typer.Option(help="Write the training log (loss curve, times, mAP) as JSON.")] = None,
    seed: Annotated[int, option("--seed", help="Seed for weights, shuffling and augmentation.")] = 0,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Train with mmdet3d's CenterHead targets and losses, or AWML's TransFusionHead's (--recipe transfusion:
    Hungarian-matched queries); AdamW, one-cycle, grad clip 15, AMP on cuda."""
    with ThirdParty(verbose=verbose) as third_party:
        preset = model_record(preset, config).model_name
        request = TrainRequest(out=out, recipe=recipe_name(recipe, config), preset=preset, scenes=scenes,
                               data_root=data_root, synthetic=synthetic, steps=steps, epochs=epochs,
                               batch_size=batch_size, lr=lr, device=device, workers=workers, val_scenes=val_scenes,
                               val_every=val_every, half=half, log=log, seed=seed)
        _train(request, quiet, third_party)


@dataclass(frozen=True)
class TrainRequest:
    """One `cpdebug train` as typed; `check()` says what is wrong before any scene is read."""

    out: Path
    recipe: str
    preset: str
    scenes: Path | None
    data_root: Path | None
    synthetic: int
    steps: int
    epochs: float
    batch_size: int
    lr: float
    device: str
    workers: int
    val_scenes: int
    val_every: int
    half: bool
    log: Path | None
    seed: int

    def check(self) -> None:
        from cp_debug.cli.common.preflight import check_inputs, check_outputs
        from cp_debug.errors import BadInputError

        if (self.scenes is None) == (self.synthetic <= 0):
            raise BadInputError("give the training scenes: --scenes DIR (from `cpdebug scenes`) or --n N")
        if self.device not in ("cpu", "cuda"):
            raise BadInputError(f"--device {self.device!r}: choose cpu or cuda")
        if self.batch_size < 1 or self.workers < 0 or self.val_scenes < 0 or self.val_every < 0:
            raise BadInputError("--batch-size must be >= 1 and --workers, --val-n, --val-every >= 0")
        if self.out.suffix != ".pth":
            raise BadInputError(f"--out {self.out} must end in .pth")
        check_inputs(scenes=self.scenes, data_root=self.data_root)
        check_outputs(self.log)


def _train(r: TrainRequest, quiet: bool, third_party: ThirdParty) -> None:
    from cp_debug.cli.common.bar import progress_bar
    from cp_debug.cli.common.output import stdout_console
    from cp_debug.errors import BackendUnavailableError, BadInputError
    from cp_debug.recipes.catalog import detector

    trainee = detector(r.recipe)
    cfg = trainee.get_preset(r.preset)
    r.check()
    scenes, synthetic, seed, steps, device = r.scenes, r.synthetic, r.seed, r.steps, r.device

    from cp_debug.train.batches import SceneDataset

    if scenes is not None:
        from cp_debug.data.infos import read_infos

        samples = read_infos(scenes, r.data_root)
        if not samples:
            raise BadInputError(f"{scenes} holds no samples")
        dataset = SceneDataset(cfg, samples=samples, seed=seed)
    else:
        from cp_debug.data.scenes import training_seeds

        dataset = SceneDataset(cfg, seeds=list(training_seeds(synthetic)), seed=seed)
    if steps <= 0:
        steps = max(1, int(round(r.epochs * len(dataset) / r.batch_size)))

    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailableError("--device cuda was asked but torch sees no CUDA device; use --device cpu")
    from cp_debug.train.runner import run_training

    result = run_training(cfg, dataset, steps=steps, batch_size=r.batch_size, lr=r.lr, device=device,
                          workers=r.workers, val_scenes=r.val_scenes, val_every=r.val_every, seed=seed, out=r.out,
                          half=r.half, log_path=None,
                          source=str(scenes) if scenes is not None else f"synthetic seeds 0..{synthetic - 1}",
                          bar=lambda total: progress_bar(f"train {r.preset}", total, quiet, third_party.terminal),
                          detector=trainee)
    log = r.log
    if log is not None:  # the run's log, with the third-party warnings caught in it
        from cp_debug.cli.common.output import with_runs_on
        from cp_debug.files import json_text, write_text_atomic

        caught = [w.to_json() for w in third_party.warnings()]
        write_text_atomic(log, json_text({**result.to_json(), **with_runs_on(), "third_party_warnings": caught},
                                         indent=1))
    if not quiet:
        print(result.summary())
    third_party.print_count(stdout_console(), where="the log's third_party_warnings" if log is not None else None)
