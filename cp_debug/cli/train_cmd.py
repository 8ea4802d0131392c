"""`cpdebug train`: train a CenterPoint preset on scenes with ground truth; an mmengine checkpoint comes out."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from cp_debug.cli._errors import handle_errors
from cp_debug.cli._quiet import ThirdParty, Verbose
from cp_debug.cli.export_cmd import Preset


def train(
    out: Annotated[Path, typer.Option(help="Checkpoint to write (.pth, mmengine layout).")],
    preset: Preset = "demo",
    scenes: Annotated[Optional[Path], typer.Option(help="Training scenes: a folder from `cpdebug scenes` or an mmdet3d info .pkl.")] = None,
    data_root: Annotated[Optional[Path], typer.Option(help="Folder the info file's lidar paths are relative to (default: its own).")] = None,
    synthetic: Annotated[int, typer.Option(help="Instead of --scenes: generate this many training scenes (seeds 0..N-1) on the fly.")] = 0,
    steps: Annotated[int, typer.Option(help="Optimizer steps (0: use --epochs).")] = 0,
    epochs: Annotated[float, typer.Option(help="Passes over the scenes when --steps is 0.")] = 20.0,
    batch_size: Annotated[int, typer.Option(help="Scenes per step.")] = 4,
    lr: Annotated[float, typer.Option(help="Peak learning rate of the one-cycle schedule (AdamW).")] = 3e-4,
    device: Annotated[str, typer.Option(help="cpu or cuda (mixed precision on cuda).")] = "cpu",
    workers: Annotated[int, typer.Option(help="DataLoader worker processes (scene loading, augmentation, voxelization).")] = 0,
    val_scenes: Annotated[int, typer.Option(help="Held-out scenes for the final nuScenes center-distance mAP (0: none).")] = 50,
    val_every: Annotated[int, typer.Option(help="Also validate every this many steps (0: only at the end).")] = 0,
    half: Annotated[bool, typer.Option(help="Store the checkpoint's tensors in float16 (half the size; loads as float32).")] = False,
    log: Annotated[Optional[Path], typer.Option(help="Write the training log (loss curve, times, mAP) as JSON.")] = None,
    seed: Annotated[int, typer.Option(help="Seed for weights, shuffling and augmentation.")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    verbose: Verbose = False,
) -> None:
    """Train with mmdet3d's CenterHead targets and losses (AdamW, one-cycle, grad clip 15, AMP on cuda)."""
    args = locals()
    with handle_errors(), ThirdParty(verbose=args.pop("verbose")) as third_party:
        _train(**args, third_party=third_party)


def _train(out, preset, scenes, data_root, synthetic, steps, epochs, batch_size, lr, device, workers, val_scenes,
           val_every, half, log, seed, quiet, third_party) -> None:
    from cp_debug.cli._bar import progress_bar
    from cp_debug.cli._output import stdout_console
    from cp_debug.errors import BackendUnavailableError, BadInputError
    from cp_debug.models.centerpoint.config import get_preset

    cfg = get_preset(preset)
    if (scenes is None) == (synthetic <= 0):
        raise BadInputError("give the training scenes: --scenes DIR (from `cpdebug scenes`) or --synthetic N")
    if device not in ("cpu", "cuda"):
        raise BadInputError(f"--device {device!r}: choose cpu or cuda")
    if batch_size < 1 or workers < 0 or val_scenes < 0 or val_every < 0:
        raise BadInputError("--batch-size must be >= 1 and --workers, --val-scenes, --val-every >= 0")
    if out.suffix != ".pth":
        raise BadInputError(f"--out {out} must end in .pth")

    from cp_debug.train.batches import SceneDataset

    if scenes is not None:
        from cp_debug.data.infos import read_infos

        samples = read_infos(scenes, data_root)
        if not samples:
            raise BadInputError(f"{scenes} holds no samples")
        dataset = SceneDataset(cfg, samples=samples, seed=seed)
    else:
        from cp_debug.data.scenes import training_seeds

        dataset = SceneDataset(cfg, seeds=list(training_seeds(synthetic)), seed=seed)
    if steps <= 0:
        steps = max(1, int(round(epochs * len(dataset) / batch_size)))

    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailableError("--device cuda was asked but torch sees no CUDA device; use --device cpu")
    from cp_debug.train.runner import run_training

    result = run_training(cfg, dataset, steps=steps, batch_size=batch_size, lr=lr, device=device, workers=workers,
                          val_scenes=val_scenes, val_every=val_every, seed=seed, out=out, half=half, log_path=None,
                          source=str(scenes) if scenes is not None else f"synthetic seeds 0..{synthetic - 1}",
                          bar=lambda total: progress_bar(f"train {preset}", total, quiet, third_party.terminal))
    if log is not None:  # the run's log, with the third-party warnings caught in it
        import json

        from cp_debug.files import write_text_atomic

        caught = [w.to_json() for w in third_party.warnings()]
        write_text_atomic(log, json.dumps({**result.to_json(), "third_party_warnings": caught}, indent=1))
    if not quiet:
        print(result.summary())
    third_party.print_count(stdout_console(), where="the log's third_party_warnings" if log is not None else None)
