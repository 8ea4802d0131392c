"""Train a detector on scenes with ground truth: AdamW + one-cycle, grad clip, mixed precision on CUDA.

The loop takes one `detectors.Detector` (a recipe's `train` plug-in gives it: `recipes/<name>/train.py`).
CenterPoint as AWML trains it: mmdet3d's initialisation with the heatmap bias at -2.19; for both: AdamW (lr 3e-4,
weight decay 0.01), gradient norm clipped at 15, a one-cycle schedule (cosine), fp16 autocast with loss scaling on CUDA.
The result is saved in mmengine's layout by `save_checkpoint` (float16 tensors with `half=True`; they load
into the float32 model unchanged in meaning).
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable


if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.train.batches import SceneDataset
    from cp_debug.train.detectors import Detector


@dataclass(frozen=True)
class TrainOptions:
    steps: int = 1000
    batch_size: int = 4
    lr: float = 3e-4
    weight_decay: float = 0.01
    grad_clip: float = 15.0
    pct_start: float = 0.3
    amp: bool = True  # used only on CUDA
    device: str = "cpu"
    workers: int = 0
    seed: int = 0
    log_every: int = 20


@dataclass(frozen=True)
class StepLog:
    """The mean losses over the steps since the previous log row; `parts` by the detector's names."""

    step: int
    loss: float
    parts: dict
    lr: float
    elapsed_s: float

    def to_json(self) -> dict:
        """Flat: {"step", "loss", <each part>, "lr", "elapsed_s"} (the training log's rows)."""
        return {"step": self.step, "loss": self.loss, **self.parts, "lr": self.lr, "elapsed_s": self.elapsed_s}


@dataclass(frozen=True)
class TrainResult:
    model: object  # the trained detector, eval mode, on CPU
    log: tuple[StepLog, ...] = field(default_factory=tuple)
    seconds: float = 0.0
    samples_seen: int = 0

    @property
    def first_loss(self) -> float:
        return self.log[0].loss if self.log else math.nan

    @property
    def last_loss(self) -> float:
        return self.log[-1].loss if self.log else math.nan


def _batches(loader, dataset):
    epoch = 0
    while True:
        dataset.epoch = epoch  # a different augmentation each pass (workers copy the dataset per epoch)
        yield from loader
        epoch += 1


def train(cfg, dataset: "SceneDataset", opts: TrainOptions,
          on_step: Callable[[int, dict, object], None] | None = None, model=None,
          *, detector: "Detector") -> TrainResult:
    """Train `detector` (the run's recipe's, handed down) for `opts.steps` optimizer steps (cycling over the dataset);
    `on_step(step, losses, model)` after each (the model may be switched to eval and back there, e.g. to
    validate)."""
    import torch

    from cp_debug.train.batches import collate

    torch.manual_seed(opts.seed)
    device = torch.device(opts.device)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
    model = (model or detector.training_model(cfg, opts.seed)).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=opts.lr, weight_decay=opts.weight_decay, betas=(0.95, 0.99))
    sched = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=opts.lr, total_steps=max(opts.steps, 2),
                                                pct_start=opts.pct_start, anneal_strategy="cos",
                                                div_factor=10.0, final_div_factor=1e3)
    use_amp = cuda and opts.amp
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=opts.batch_size, shuffle=True, num_workers=opts.workers, collate_fn=collate,
        drop_last=len(dataset) >= opts.batch_size, pin_memory=cuda, persistent_workers=False,
        generator=torch.Generator().manual_seed(opts.seed))
    log: list[StepLog] = []
    acc: dict[str, float] = {}
    n = 0
    t0 = time.perf_counter()
    batches = _batches(loader, dataset)
    for step in range(1, opts.steps + 1):
        batch = next(batches)
        losses = detector.batch_losses(model, batch, cfg, device, use_amp)
        loss = sum(losses.values())
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), opts.grad_clip)
        scaler.step(optimizer)  # skipped where the fp16 loss scale overflowed
        scaler.update()
        with warnings.catch_warnings():  # torch warns when a skipped step precedes the scheduler's
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step", category=UserWarning)
            sched.step()
        values = {"loss": float(loss.detach()), **{k: float(v.detach()) for k, v in losses.items()}}
        for k, v in values.items():
            acc[k] = acc.get(k, 0.0) + v
        n += 1
        if step % opts.log_every == 0 or step == opts.steps or step == 1:
            mean = {k: v / n for k, v in acc.items()}
            log.append(StepLog(step, mean.pop("loss"), mean, float(sched.get_last_lr()[0]), time.perf_counter() - t0))
            acc, n = {}, 0
        if on_step:
            on_step(step, values, model)
    model = model.eval().to("cpu")
    return TrainResult(model=model, log=tuple(log), seconds=time.perf_counter() - t0,
                       samples_seen=opts.steps * opts.batch_size)
