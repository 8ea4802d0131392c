"""What a fix of any one-graph model searches and verifies on: the samples (read by the generic module recipe,
`samples/sets.py`) split into the search's part and the held-out part the written file is verified on; the
model as one FP32 ONNX graph (`load_model`); and `prepare`, which gives both from the command's options."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cp_debug.backends.spec import BackendSpec
from cp_debug.errors import BadInputError
from cp_debug.samples.sets import Sample, default_samples, graph_inputs, load_samples

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.recipe_contract.recipe import Recipe


@dataclass(frozen=True)
class SampleSplit:
    """The search's samples and the held-out ones the fix is verified on (the search's own where only one sample
    was given: `held_out` False, and the CLI says so)."""

    search: tuple[Sample, ...]
    verify: tuple[Sample, ...]
    source: str  # where the samples came from, in words

    @property
    def held_out(self) -> bool:
        return not {s.name for s in self.verify} & {s.name for s in self.search}

    def to_json(self) -> dict:
        return {"source": self.source, "search": [s.name for s in self.search],
                "verify": [s.name for s in self.verify], "held_out": self.held_out}


def split_samples(samples: Sequence[Sample], verify_n: int | None, source: str) -> SampleSplit:
    """The first part searched, the last `verify_n` held out (default: half, rounded down, where there are ≥ 2; with
    one sample the search's is verified again)."""
    n = len(samples)
    if n == 0:
        raise BadInputError("no samples to search on: --inputs / --data gave none")
    if verify_n is None:
        verify_n = n // 2
    if verify_n < 0 or (verify_n >= n and n > 1):
        raise BadInputError(f"--verify-n {verify_n}: of {n} samples, at least one must be left to the search "
                            f"(give 1…{n - 1}, or 0 to verify on the search's own)")
    if n == 1 or verify_n == 0:
        return SampleSplit(tuple(samples), tuple(samples), source)
    return SampleSplit(tuple(samples[:n - verify_n]), tuple(samples[n - verify_n:]), source)


@dataclass(frozen=True)
class GivenModel:
    """The one graph a generic fix works on: the FP32 ONNX model, where it came from (fix.json's `model`), the
    torch module names its nodes' scopes are read against, and its own first feed (the example inputs, or seeded
    random ones for an ONNX file; None where its dims are dynamic)."""

    model: object  # onnx.ModelProto
    source: dict
    module_names: frozenset
    first: Mapping[str, np.ndarray] | None
    first_name: str
    what: str


def load_model(torch_target: str | None, onnx_path: Path | None, *, exporter: str, seed: int,
               need_feed: bool, backends: Sequence[BackendSpec] = (), recipe: "Recipe") -> GivenModel:
    """`--torch FILE.py:FUNC` (exported by the exporter bisect uses, its generators seeded from `seed`) or `--onnx
    FILE.onnx`, as every sample run loads it (the module recipe's `load_module`); one stage only. `backends`: what
    the fix runs (a model too big for the machine with them is one line before the export). `recipe`: the recipe that
    loads any one-graph model (`Recipe.load_module`), handed down by the command line."""
    m = recipe.load_module(torch_target, onnx_path, exporter=exporter, seed=seed, need_feed=need_feed,
                           backends=backends)
    stage = m.subject.stages[0]
    if onnx_path is not None:
        first = m.subject.inputs if need_feed else None
        return GivenModel(stage.onnx(), m.source, frozenset(), first, "seeded", Path(onnx_path).name)
    first = dict(zip(m.graph.names, m.subject.inputs.values()))
    modules = frozenset(n for n, _ in stage.module.named_modules()) if stage.module is not None else frozenset()
    return GivenModel(stage.onnx(), m.source, modules, first, "example", m.graph.what)


def prepare(g: Mapping, seed: int, backends: Sequence[BackendSpec], recipe: "Recipe") -> tuple[GivenModel, SampleSplit,
                                                                                     list[Sample] | None, list[str]]:
    """What `fix --torch / --onnx` gives (`g`: torch, onnx, inputs, data, calib, verify_samples, exporter) as the
    model, the split samples, the calibration samples (None: the search's) and the input casts said; `backends`:
    what the fix runs, the candidate last; `recipe`: the one that loads it (`load_model`)."""
    if g["calib"] is not None and not backends[-1].calibrated:
        raise BadInputError("--calib goes with a calibrated candidate (--backends ort-cpu-int8, ort-cpu-fp8, "
                            "ort-cpu-nvfp4)")
    for option in ("inputs", "calib"):
        if g[option] is not None and not Path(g[option]).exists():
            raise BadInputError(f"--{option} not found: {g[option]}")
    given = g["inputs"] is not None or g["data"] is not None
    m = load_model(g["torch"], g["onnx"], exporter=g["exporter"], seed=seed, need_feed=not given, backends=backends,
                   recipe=recipe)
    graph = graph_inputs(m.model, m.what)
    samples, said = load_samples(g["inputs"], g["data"], graph)
    source = (str(g["inputs"]) if g["inputs"] is not None else f"--data {g['data']}" if g["data"] is not None
              else f"the model's {m.first_name} inputs and seeded random variants (seed {seed})")
    if not samples:
        samples = default_samples(m.first, seed, first_name=m.first_name)
    split = split_samples(samples, g["verify_samples"], source)
    calib = _calibration(Path(g["calib"]), samples[0].feed) if g["calib"] is not None else None
    return m, split, calib, said


def _calibration(given: Path, one: Mapping[str, np.ndarray]) -> list[Sample]:
    """`--calib`'s samples, read as `bisect --calib` reads them (`samples.calibration.read_calib`)."""
    from cp_debug.samples.calibration import read_calib

    return [Sample(f"calib_{k}", feed) for k, feed in enumerate(read_calib(given, one))]
