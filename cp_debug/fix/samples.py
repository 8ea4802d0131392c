"""What a fix of any one-graph model searches and verifies on: the samples (read by the generic module recipe,
`samples/sets.py`) split into the search's part and the held-out part the written file is verified on; the
model as one FP32 ONNX graph (`load_model`); and `prepare`, which gives both from the command's options. A declared
range (`--min-shapes` / `--max-shapes`, `samples/shapes.py`) adds samples at its min, mid and max, two at each (one
searched, one held out), so the set is verified at every one of those shapes and `fix --check` verifies them again."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cp_debug.backends.spec import BackendSpec
from cp_debug.bisect.subjects.feeds import calib_files, npz_shapes
from cp_debug.errors import BadInputError
from cp_debug.export.dynamic import said_of
from cp_debug.samples.sets import Sample, default_samples, graph_inputs, load_samples

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.recipe_contract.recipe import Recipe


@dataclass(frozen=True)
class SampleSplit:
    """The search's samples and the held-out ones the fix is verified on (the search's own where only one sample
    was given: `held_out` False, and the CLI says so). Samples of several input shapes are split shape by shape, so
    that the search and the verification each see every shape (`by_shape`)."""

    search: tuple[Sample, ...]
    verify: tuple[Sample, ...]
    source: str  # where the samples came from, in words
    shape_range: dict | None = None  # the declared range the samples cover (`samples.shapes.range_doc`)

    @property
    def held_out(self) -> bool:
        return not {s.name for s in self.verify} & {s.name for s in self.search}

    def by_shape(self) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
        """Each input shape's (search, verify) sample names, where the samples come in several shapes; else {}."""
        shapes = dict.fromkeys(s.shape for s in (*self.search, *self.verify))
        if len(shapes) < 2:
            return {}
        return {k: (tuple(s.name for s in self.search if s.shape == k), tuple(s.name for s in self.verify
                                                                                if s.shape == k)) for k in shapes}

    def to_json(self) -> dict:
        shapes = [{"shape": k, "search": list(a), "verify": list(b), "held_out": not set(a) & set(b)}
                  for k, (a, b) in self.by_shape().items()]
        return {"source": self.source, "search": [s.name for s in self.search],
                "verify": [s.name for s in self.verify], "held_out": self.held_out,
                **({"shapes": shapes} if shapes else {})}


def split_samples(samples: Sequence[Sample], verify_n: int | None, source: str) -> SampleSplit:
    """The first part searched, the last `verify_n` held out (default: half, rounded down, where there are ≥ 2; with
    one sample the search's is verified again). Samples of several input shapes: split so, shape by shape
    (`verify_n` a shape's; a shape of one sample is searched and verified on it), so that the set is searched and
    verified at every shape."""
    n = len(samples)
    if n == 0:
        raise BadInputError("no samples to search on: --inputs / --data gave none")
    given, verify_n = verify_n, n // 2 if verify_n is None else verify_n
    if verify_n < 0 or (verify_n >= n and n > 1):
        raise BadInputError(f"--verify-n {verify_n}: of {n} samples, at least one must be left to the search "
                            f"(give 1…{n - 1}, or 0 to verify on the search's own)")
    groups: dict[str, list[Sample]] = {}
    for s in samples:
        groups.setdefault(s.shape, []).append(s)
    if len(groups) > 1:
        parts = [_split(g, given) for g in groups.values()]
        return SampleSplit(tuple(s for p in parts for s in p[0]), tuple(s for p in parts for s in p[1]), source)
    search, verify = _split(samples, verify_n)
    return SampleSplit(search, verify, source)


def _split(samples: Sequence[Sample], verify_n: int | None) -> tuple[tuple[Sample, ...], tuple[Sample, ...]]:
    n = len(samples)
    k = min(n // 2 if verify_n is None else verify_n, n - 1)
    if n == 1 or k == 0:
        return tuple(samples), tuple(samples)
    return tuple(samples[:n - k]), tuple(samples[n - k:])


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
               need_feed: bool, backends: Sequence[BackendSpec] = (), recipe: "Recipe", **shapes) -> GivenModel:
    """`--torch FILE.py:FUNC` (exported by the exporter bisect uses, its generators seeded from `seed`) or `--onnx
    FILE.onnx`, as every sample run loads it (the module recipe's `load_module`); one stage only. `backends`: what
    the fix runs (a model too big for the machine with them is one line before the export). `recipe`: the recipe that
    loads any one-graph model (`Recipe.load_module`), handed down by the command line. `shapes`: a `--torch`
    model's `dynamic` (`--dynamic`) and `shapes` (its samples'), as `load_module` takes them."""
    m = recipe.load_module(torch_target, onnx_path, exporter=exporter, seed=seed, need_feed=need_feed,
                           backends=backends, **shapes)
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
    if g["inputs"] is not None and not Path(g["inputs"]).exists():
        raise BadInputError(f"--inputs not found: {g['inputs']}")
    calib_given = calib_files(g["calib"]) if g["calib"] else None  # said before the model loads
    given = g["inputs"] is not None or g["data"] is not None
    profile = _profile(g.get("range"))
    shapes = ({"dynamic": g.get("dynamic"), "shapes": npz_shapes(g["inputs"]), "example_at": g["inputs"]}
              if g["torch"] else {})
    if g["torch"] and profile is not None:
        from cp_debug.export.dynamic import of_range

        shapes["ranged"] = of_range({n: r.min for n, r in profile.items()}, {n: r.max for n, r in profile.items()})
    m = load_model(g["torch"], g["onnx"], exporter=g["exporter"], seed=seed, need_feed=not given and profile is None,
                   backends=backends, recipe=recipe, **shapes)
    graph = graph_inputs(m.model, m.what)
    samples, said = load_samples(g["inputs"], g["data"], graph)
    said = [*said_of(m.source.get("dynamic")), *said]
    source = (str(g["inputs"]) if g["inputs"] is not None else f"--data {g['data']}" if g["data"] is not None
              else f"the model's {m.first_name} inputs and seeded random variants (seed {seed})")
    ranged = None
    if profile is not None:
        samples, ranged = _range_samples(profile, m.model, graph, seed, samples)
        source = (f"{source} and " if given else "") + f"the range's min, mid and max (seed {seed})"
    if not samples:
        samples = default_samples(m.first, seed, first_name=m.first_name)
    split = split_samples(samples, g["verify_samples"], source)
    split = SampleSplit(split.search, split.verify, split.source, ranged)
    calib = _calibration(calib_given, samples[0].feed, m.model) if calib_given else None
    return m, split, calib, said


def _profile(given: Sequence[str | None] | None):
    """`--min-shapes` / `--max-shapes` read (`samples.shapes.parse_profile`), None where neither is given."""
    if not given or all(t is None for t in given):
        return None
    from cp_debug.samples.shapes import SPELLING, parse_profile

    if any(t is None for t in given):
        raise BadInputError(f"give both --min-shapes / --max-shapes ({SPELLING})")
    return parse_profile(*given)


def _range_samples(profile, model, graph, seed: int, given: list[Sample]) -> tuple[list[Sample], dict]:
    """The samples given and those made at the range's min, mid and max (`samples.shapes.range_samples`), checked
    against the graph's dynamic axes; and fix.json's `shape_range`."""
    from cp_debug.samples.shapes import ShapedInputs, dim_symbols, index_bounds, range_doc, range_samples, shape_space

    space = shape_space(profile, graph, dim_symbols(model))
    bounds = index_bounds(model)
    made = range_samples(space, graph.dtypes, bounds, seed)
    taken = {s.name for s in given} & {s.name for s in made}
    if taken:
        raise BadInputError(f"the samples {', '.join(sorted(taken))} share their names with those made over the "
                            "range: rename those files")
    return [*given, *made], range_doc(ShapedInputs(space, graph.dtypes, bounds, seed))


def _calibration(given: Sequence[Path], one: Mapping[str, np.ndarray], model=None) -> list[Sample]:
    """`--calib`'s samples (its files, repeated or a folder's), read as every command reads them
    (`samples.calibration.read_calib`; `model`: the ONNX graph whose free first axes take any length)."""
    from cp_debug.samples.calibration import read_calib

    return [Sample(f"calib_{k}", feed) for k, feed in enumerate(read_calib(given, one, model))]
