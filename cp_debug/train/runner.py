"""One training run as the CLI does it (any `detectors.Detector`): train, validate on held-out scenes, save the
checkpoint and a log."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.lidar.space import LidarConfig
    from cp_debug.train.batches import SceneDataset
    from cp_debug.eval.devkit import DetectionEvaluation
    from cp_debug.train.detectors import Detector


@dataclass(frozen=True)
class RunSummary:
    checkpoint: str
    checkpoint_bytes: int
    preset: str
    source: str
    steps: int
    batch_size: int
    seconds: float
    loss_curve: list  # StepLog as dicts
    validations: list = field(default_factory=list)  # {"step", "mAP", "AP"}
    final: dict | None = None  # DetectionEvaluation.to_json() of the saved checkpoint, re-loaded

    def to_json(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        first, last = self.loss_curve[0]["loss"], self.loss_curve[-1]["loss"]
        lines = [f"trained {self.preset} for {self.steps} steps x {self.batch_size} scenes in {self.seconds:.0f} s; "
                 f"loss {first:.3f} -> {last:.3f}",
                 f"checkpoint {self.checkpoint} ({self.checkpoint_bytes / 2**20:.1f} MiB)"]
        if self.final:
            per_class = ", ".join(f"{k} {v['AP']:.3f}" for k, v in self.final["per_class"].items())
            lines.append(f"held-out mAP (nuScenes center distance, {self.final['num_samples']} scenes): "
                         f"{self.final['mAP']:.3f} ({per_class})")
        return "\n".join(lines)


def _write_json(path: Path, data: dict) -> None:
    """The training log: strict JSON (`files.json_text`), indent 1, no final newline (as it always was)."""
    from cp_debug.files import json_text, write_text_atomic

    write_text_atomic(path, json_text(data, indent=1), parents=True)


def _validation_row(step: int, r: "DetectionEvaluation") -> dict:
    return {"step": step, "mAP": r.mean_ap, "NDS": r.nds, "AP": {c.name: c.ap for c in r.per_class}}


def save_trained(model, path: Path, meta: dict, half: bool = False) -> Path:
    """mmengine-layout checkpoint of `model`; with `half`, floating tensors stored as float16."""
    import copy

    from cp_debug.pickles import save_checkpoint

    if half:
        model = copy.deepcopy(model).half()
    return save_checkpoint(model, path, meta={**meta, "stored_dtype": "float16" if half else "float32"})


def run_training(cfg: "LidarConfig", dataset: "SceneDataset", *, steps: int, batch_size: int, lr: float,
                 device: str, workers: int, val_scenes: int, val_every: int, seed: int, out: Path, half: bool,
                 log_path: Path | None, source: str, bar: Callable[[int], object],
                 detector: "Detector") -> RunSummary:
    from cp_debug.data.frames import held_out
    from cp_debug.train.loop import TrainOptions, train
    from cp_debug.train.validate import validate

    heldout = [f.in_memory(cfg) for f in held_out(val_scenes)] if val_scenes else []
    validations: list[dict] = []
    opts = TrainOptions(steps=steps, batch_size=batch_size, lr=lr, device=device, workers=workers, seed=seed,
                        log_every=max(1, min(50, steps // 20)))
    with bar(steps) as advance:
        def on_step(step: int, losses: dict, model) -> None:
            advance(**losses)
            if heldout and val_every and step % val_every == 0 and step < steps:
                r = validate(model, cfg, heldout, device, detector.detect)
                validations.append(_validation_row(step, r))

        result = train(cfg, dataset, opts, on_step, detector=detector)
    meta = {"trained_on": source, "steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed,
            "train_seconds": round(result.seconds, 1), "final_loss": result.last_loss,
            "note": "trained on cp_debug synthetic scenes, not on a real dataset"}
    final = None
    if heldout:
        path = save_trained(result.model, out, meta, half)  # validate what was saved, re-loaded
        reloaded = detector.eval_model(cfg)
        detector.load_checkpoint(reloaded, path)
        r: DetectionEvaluation = validate(reloaded.to(device), cfg, heldout, device, detector.detect)
        final = r.to_json()
        validations.append(_validation_row(steps, r))
        meta["heldout_mAP"] = r.mean_ap
        meta["heldout_scenes"] = len(heldout)
    path = save_trained(result.model, out, meta, half)
    summary = RunSummary(checkpoint=str(path), checkpoint_bytes=path.stat().st_size, preset=cfg.name, source=source,
                         steps=steps, batch_size=batch_size, seconds=result.seconds,
                         loss_curve=[s.to_json() for s in result.log], validations=validations, final=final)
    if log_path is not None:
        _write_json(Path(log_path), summary.to_json())
    return summary
