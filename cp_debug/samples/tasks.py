"""How a generic model's outputs become a task result, and the metric that scores it per sample (`--metric`): a
candidate's outputs against the reference's (and a sample's label, where `--data` yields one). The metric reads the
model's first output.

Built-ins: `top1` — the candidate's top class is the reference's (classifier logits, classes on the last axis; the share
of rows of a batch); `top5` — the reference's top class is among the candidate's five; `argmax` — the share of positions
whose argmax agrees (token logits [.., T, V]: the last axis; pixel logits [N, C, H, W]: axis 1); `cosine` / `snr` (dB) —
embeddings or any output as numbers; `accuracy` — the top class against the sample's label. A user's `FILE.py:FUNC` is
called as FUNC(outputs, reference, label) -> float for every sample and backend (the reference's own value included);
one with a parameter named `inputs` — FUNC(outputs, reference, label=None, inputs=None) — gets the sample's inputs too,
by name as the outputs (an MLM's decision is at its masked positions, which only its input ids hold), told from its
signature (`TaskMetric.sees_inputs`). A discrete metric (a class, a token) names the samples whose value changes from
the reference's; a continuous one (cosine, snr) names those the noise model judges beyond the candidate's precision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from cp_debug.errors import BadInputError

SNR_CAP_DB = 200.0  # identical outputs: the SNR is capped here (and a non-finite output at its negative)


@dataclass(frozen=True)
class TaskMetric:
    """A per-sample score of a backend's outputs: `fn(outputs, reference, label) -> float`, higher is better; with
    `sees_inputs`, `fn(outputs, reference, label, inputs=...)`: the sample's inputs by name too."""

    name: str
    fn: Callable[..., float]
    discrete: bool = True  # changed: its value differs from the reference's (else: the noise model's outcome)
    needs_label: bool = False
    sees_inputs: bool = False  # the function names a parameter `inputs` (`task_metric` reads its signature)

    def value(self, outputs: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray],
              label: np.ndarray | None, inputs: Mapping[str, np.ndarray] | None = None) -> float:
        """The metric of `outputs` against `reference`; `inputs`: the sample's (graph input name -> array), given to a
        function that reads them (`sees_inputs`)."""
        if self.needs_label and label is None:
            raise BadInputError(f"--metric {self.name} needs each sample's label: --data FILE.py:FUNC yielding a "
                                "'label' (or 'labels') key besides the inputs")
        if self.sees_inputs and inputs is None:  # a caller that holds no inputs: a bug of ours, not the user's
            raise RuntimeError(f"--metric {self.name} reads the inputs and was given none")
        try:
            return float(self.fn(outputs, reference, label, **({"inputs": dict(inputs)} if self.sees_inputs
                                                                else {})))
        except (BadInputError, TypeError, ValueError, IndexError, KeyError) as err:
            if isinstance(err, BadInputError) or self.name in BUILT_INS:
                raise BadInputError(f"--metric {self.name}: {err}") from err
            from cp_debug.errors import UserCodeError

            # an output read by a name the model does not give it (`--torch`'s export names them `output0`, …)
            given = f"the outputs it was given: {', '.join(map(repr, outputs))}"
            if self.sees_inputs:
                given += f"; the inputs: {', '.join(map(repr, inputs))}"
            named = f" ({given})" if isinstance(err, KeyError) else ""
            raise UserCodeError.of(err, f"in the --metric {self.name}{named}") or BadInputError(
                f"--metric {self.name}: {type(err).__name__}: {err}{named}") from err

    def changed(self, value: float, reference: float) -> bool:
        """A discrete metric's sample changed: its value is not the reference's (within float rounding)."""
        return not (math.isfinite(value) and abs(value - reference) <= 1e-9 * max(1.0, abs(reference)))


def _first(outputs: Mapping[str, np.ndarray]) -> np.ndarray:
    return np.asarray(next(iter(outputs.values())), dtype=np.float64)


def _rows(x: np.ndarray) -> np.ndarray:
    return x.reshape(1, -1) if x.ndim <= 1 else x.reshape(-1, x.shape[-1])


def top1(outputs, reference, label=None) -> float:
    return float(np.mean(np.argmax(_rows(_first(outputs)), -1) == np.argmax(_rows(_first(reference)), -1)))


def top5(outputs, reference, label=None) -> float:
    got, want = _rows(_first(outputs)), np.argmax(_rows(_first(reference)), -1)
    k = min(5, got.shape[-1])
    top = np.argsort(-np.nan_to_num(got, nan=-np.inf), -1)[:, :k]
    return float(np.mean((top == want[:, None]).any(-1)))


def argmax(outputs, reference, label=None) -> float:
    got, want = _first(outputs), _first(reference)
    axis = 1 if want.ndim == 4 else -1
    return float(np.mean(np.argmax(got, axis) == np.argmax(want, axis)))


def cosine(outputs, reference, label=None) -> float:
    a, b = _first(outputs).ravel(), _first(reference).ravel()
    if not np.isfinite(a).all():
        return 0.0
    n = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b / n) if n > 0 else float(np.array_equal(a, b))


def snr(outputs, reference, label=None) -> float:
    a, b = _first(outputs), _first(reference)
    if not np.isfinite(a).all():
        return -SNR_CAP_DB
    noise = float(np.sum((a - b) ** 2))
    signal = float(np.sum(b * b))
    if noise == 0:
        return SNR_CAP_DB
    return float(np.clip(10 * np.log10(max(signal, 1e-300) / noise), -SNR_CAP_DB, SNR_CAP_DB))


def accuracy(outputs, reference, label) -> float:
    pred = np.argmax(_rows(_first(outputs)), -1)
    want = np.asarray(label).reshape(-1).astype(np.int64)
    if want.size not in (1, pred.size):
        raise BadInputError(f"the label holds {want.size} values for {pred.size} predictions")
    return float(np.mean(pred == want))


BUILT_INS: dict[str, TaskMetric] = {
    "top1": TaskMetric("top1", top1), "top5": TaskMetric("top5", top5), "argmax": TaskMetric("argmax", argmax),
    "cosine": TaskMetric("cosine", cosine, discrete=False), "snr": TaskMetric("snr", snr, discrete=False),
    "accuracy": TaskMetric("accuracy", accuracy, needs_label=True),
}


def task_metric(text: str) -> TaskMetric:
    """`--metric NAME` (a built-in) or `--metric FILE.py:FUNC` (the user's; FILE.py runs)."""
    if text in BUILT_INS:
        return BUILT_INS[text]
    if ":" not in text:
        raise BadInputError(f"--metric {text!r}: a built-in ({', '.join(BUILT_INS)}) or FILE.py:FUNC")
    from cp_debug.bisect.subjects.loaders import user_function

    fn = user_function(text, "--metric")
    return TaskMetric(text, fn, sees_inputs=_names_inputs(fn))


def _names_inputs(fn) -> bool:
    """Whether the user's metric names a parameter `inputs` (it takes the sample's inputs, by name)."""
    import inspect

    try:
        return "inputs" in inspect.signature(fn).parameters
    except (TypeError, ValueError):  # a builtin or C function without a signature: the old form
        return False
