"""What a calibrated candidate (INT8, FP8, NVFP4) of a sample sweep or eval calibrates on (issue 85, item 2: "INT8
over many samples is impossible for any model").

`--calib` given: its files read as every command reads them (`bisect.subjects.feeds.calibration_feeds`: `.npz` files,
repeated, whose arrays are one sample or a batch along a first axis, or a folder of them). Not given: the set's first
`DEFAULT_SAMPLES` readable samples — a PTQ calibration drawn from the data the set judges, said as such in the
report (an optimistic choice: calibrate on held-out inputs with `--calib` to judge a deployment's own).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cp_debug.errors import BadInputError

DEFAULT_SAMPLES = 16


@dataclass(frozen=True)
class Calibration:
    feeds: tuple[dict[str, np.ndarray], ...]
    source: str  # in words, for the report

    def to_json(self) -> dict:
        return {"samples": len(self.feeds), "source": self.source}


def calibration_of(samples, given: "Path | Sequence[Path] | None" = None, n: int = DEFAULT_SAMPLES) -> Calibration:
    """The feeds of `given` (`--calib`: files or folders, one or several), else of the first `n` readable samples of
    `samples` (`sets.SampleSet`)."""
    from cp_debug.samples.sets import SampleError

    readable = (s for s in samples if not isinstance(s, SampleError))
    first = next(readable, None)
    if first is None:
        raise BadInputError("no readable sample to calibrate on: give --calib FILE.npz")
    if given:
        given = [given] if isinstance(given, (str, Path)) else list(given)
        feeds = read_calib(given, first.feed)
        return Calibration(tuple(feeds), f"{' '.join(f'--calib {p}' for p in given)} ({len(feeds)} samples)")
    feeds = [dict(first.feed)]
    for s in readable:
        if len(feeds) >= n:
            break
        feeds.append(dict(s.feed))
    return Calibration(tuple(feeds), f"the set's first {len(feeds)} samples (no --calib: the judged data itself)")


def read_calib(given: "Path | Sequence[Path]", one: Mapping[str, np.ndarray],
               model=None) -> list[dict[str, np.ndarray]]:
    """`--calib`'s feeds as every command reads them (`bisect.subjects.feeds.calibration_feeds`): .npz files (or
    folders of them) whose arrays are one sample each, of `one`'s shapes, or a batch along a first axis ([8,3,32,32]
    or [8,1,3,32,32] for one sample of [1,3,32,32]); of another length along a first axis ONNX `model` leaves free,
    one sample."""
    from cp_debug.bisect.subjects.feeds import calib_files, calibration_feeds, free_first

    feeds, _ = calibration_feeds(calib_files(given), dict(one), "the model", "the model takes it", free_first(model))
    return feeds
