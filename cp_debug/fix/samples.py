"""The samples a fix of any one-graph model searches and verifies on: the user's (`--inputs` one `.npz` or a folder of
them, `--data FILE.py:FUNC` yielding feed dicts as Polygraphy's `load_data` does), else the model's own example (or
seeded random) inputs plus a few seeded random variants, so that something is held out; split into the search's
part and the held-out part the written file is verified on.

Every sample is checked and cast by the reader `cpdebug bisect --inputs` uses (`bisect.feeds.match_inputs` /
`cast_inputs`): keys are the graph's input names or input0, input1, …
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cp_debug.errors import BadInputError

DEFAULT_VARIANTS = 3  # seeded random samples besides the example, when the user gives none


@dataclass(frozen=True)
class Sample:
    """One feed (graph input name -> array) and where it came from (a file's stem, `data_3`, `example`, `random_1`)."""

    name: str
    feed: Mapping[str, np.ndarray]


@dataclass(frozen=True)
class GraphInputs:
    """What the graph takes: input names, the shape of each (None: a dynamic dim) and its dtype."""

    names: tuple[str, ...]
    shapes: Mapping[str, tuple]
    dtypes: Mapping[str, np.dtype]
    what: str  # the model in words, for the one-line errors


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


def graph_inputs(model, what: str) -> GraphInputs:
    """The graph inputs of an ONNX model (initializers left out)."""
    import onnx

    from cp_debug.graph.model import static_dims

    inits = {i.name for i in model.graph.initializer}
    ins = [i for i in model.graph.input if i.name not in inits]
    return GraphInputs(tuple(i.name for i in ins), {i.name: tuple(static_dims(i.type) or ()) for i in ins},
                       {i.name: np.dtype(onnx.helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type))
                        for i in ins}, what)


def load_samples(given: str | Path | None, data: str | None, graph: GraphInputs, option: str = "--inputs") -> \
        tuple[list[Sample], list[str]]:
    """The user's samples (`given`: an .npz or a folder of them; `data`: FILE.py:FUNC) and the casts said; [] where
    neither was given."""
    if given is not None and data is not None:
        raise BadInputError(f"give {option} or --data, not both")
    if given is not None:
        return _from_npz(Path(given), graph, option)
    if data is not None:
        return _from_data(data, graph)
    return [], []


def default_samples(first: Mapping[str, np.ndarray], seed: int, n: int = DEFAULT_VARIANTS,
                    first_name: str = "example") -> list[Sample]:
    """The model's example (or seeded random) feed and `n` seeded random variants of it: floats drawn with each
    input's mean and spread, integers (token ids, indices) within the example's range."""
    rng = np.random.default_rng(seed + 1)
    out = [Sample(first_name, dict(first))]
    for k in range(1, n + 1):
        feed = {}
        for name, a in first.items():
            a = np.asarray(a)
            if np.issubdtype(a.dtype, np.floating):
                std = float(a.std()) if a.size > 1 and a.std() > 0 else 1.0
                feed[name] = (rng.standard_normal(a.shape) * std + float(a.mean())).astype(a.dtype)
            elif np.issubdtype(a.dtype, np.integer) and a.size:
                feed[name] = rng.integers(int(a.min()), int(a.max()) + 1, size=a.shape).astype(a.dtype)
            else:
                feed[name] = a.copy()
        out.append(Sample(f"random_{k}", feed))
    return out


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


def save_sample(path: Path, sample: Sample) -> None:
    """A sample as an .npz keyed by the graph's input names (what `--inputs` and `fix --check` read)."""
    with open(path, "wb") as f:
        np.savez(f, **{k: np.asarray(v) for k, v in sample.feed.items()})


def read_saved(files: Mapping[str, Path], graph: GraphInputs) -> list[Sample]:
    """Samples written by `save_sample` (a fix DIR's held-out inputs: sample name -> file), checked as `--inputs`
    are."""
    return [_checked(name, _npz(p, "--check"), graph, p.name) for name, p in files.items()]


def _from_npz(path: Path, graph: GraphInputs, option: str) -> tuple[list[Sample], list[str]]:
    if path.is_dir():
        files = sorted(path.glob("*.npz"))
        if not files:
            raise BadInputError(f"{option} {path}: the folder holds no .npz file (one sample per .npz)")
    elif path.is_file():
        files = [path]
    else:
        raise BadInputError(f"{option} not found: {path}")
    said: list[str] = []
    out = []
    for f in files:
        sample, casts = _cast(f.stem, _npz(f, option), graph, f"{option} {f.name}", f.name)
        out.append(sample)
        said += [c for c in casts if c not in said]
    return out, said


def _from_data(target: str, graph: GraphInputs) -> tuple[list[Sample], list[str]]:
    """`--data FILE.py:FUNC`: FUNC() yields (or returns a list of) dicts of arrays, one per sample; the file runs."""
    from cp_debug.bisect.loaders import user_function

    fn = user_function(target, "--data")
    out, said = [], []
    for k, feed in enumerate(_user_feeds(fn, target)):
        if not isinstance(feed, Mapping):
            raise BadInputError(f"--data {target}: sample {k} is a {type(feed).__name__}, not a dict of arrays "
                                "(input name -> array)")
        sample, casts = _cast(f"data_{k}", {n: np.asarray(a) for n, a in feed.items()}, graph,
                              f"--data sample {k}", f"--data sample {k}")
        out.append(sample)
        said += [c for c in casts if c not in said]
    if not out:
        raise BadInputError(f"--data {target} yielded no sample")
    return out, said


def _user_feeds(fn, target: str):
    """The feeds FUNC() yields (or returns, as a list), what its code raises being the user's error (exit 2)."""
    try:
        it = iter(fn())
        while True:
            try:
                yield next(it)
            except StopIteration:
                return
    except BadInputError:
        raise
    except Exception as err:
        from cp_debug.errors import UserCodeError, first_line

        user = UserCodeError.of(err, f"in {target.rpartition(':')[2]}()")
        raise (user or BadInputError(f"--data {target}: FUNC() must yield dicts of arrays "
                                     f"({type(err).__name__}: {first_line(err)})")) from err


def _npz(path: Path, option: str) -> dict[str, np.ndarray]:
    from cp_debug.bisect.feeds import load_npz_inputs

    return load_npz_inputs(path, option)


def _cast(name: str, given: dict, graph: GraphInputs, option: str, source: str) -> tuple[Sample, list[str]]:
    from cp_debug.bisect.feeds import cast_inputs

    feed = _matched(given, graph, option)
    feed, said = cast_inputs(feed, graph.dtypes, source, f"{graph.what} takes")
    return Sample(name, feed), said


def _checked(name: str, given: dict, graph: GraphInputs, option: str) -> Sample:
    return Sample(name, _matched(given, graph, option))


def _matched(given: dict, graph: GraphInputs, option: str) -> dict[str, np.ndarray]:
    from cp_debug.bisect.feeds import match_inputs

    return match_inputs(given, graph.names, graph.shapes, graph.what, option)


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
               need_feed: bool) -> GivenModel:
    """`--torch FILE.py:FUNC` (exported by the exporter bisect uses) or `--onnx FILE.onnx`, through bisect's loaders;
    one stage only."""
    from cp_debug.bisect.loaders import onnx_subject, torch_subject

    if bool(torch_target) == bool(onnx_path):
        raise BadInputError("give one model: --onnx FILE.onnx or --torch FILE.py:FUNC")
    if onnx_path is not None:
        from cp_debug.graph.model import load_onnx

        if not Path(onnx_path).is_file():
            raise BadInputError(f"--onnx file not found: {onnx_path}")
        model = load_onnx(onnx_path)
        first = onnx_subject(onnx_path, None, seed=seed).inputs if need_feed else None
        return GivenModel(model, {"onnx": str(onnx_path)}, frozenset(), first, "seeded", Path(onnx_path).name)
    subject = torch_subject(torch_target, None, exporter=exporter)
    if len(subject.stages) != 1:
        raise BadInputError(f"{subject.name} has {len(subject.stages)} stages: fix searches one ONNX graph")
    stage = subject.stages[0]
    model = stage.onnx()
    names = graph_inputs(model, subject.name).names
    first = dict(zip(names, subject.inputs.values()))
    modules = frozenset(n for n, _ in stage.module.named_modules()) if stage.module is not None else frozenset()
    return GivenModel(model, {"torch": str(torch_target), "exporter": exporter}, modules, first, "example",
                      f"{torch_target.rpartition(':')[2]}()'s model")


def prepare(g: Mapping, seed: int, *, int8: bool) -> tuple[GivenModel, SampleSplit, list[Sample] | None, list[str]]:
    """What `fix --torch / --onnx` gives (`g`: torch, onnx, inputs, data, calib, verify_samples, exporter) as the
    model, the split samples, the calibration samples (None: the search's) and the input casts said."""
    if g["calib"] is not None and not int8:
        raise BadInputError("--calib goes with an INT8 candidate (--backends ort-cpu-int8)")
    for option in ("inputs", "calib"):
        if g[option] is not None and not Path(g[option]).exists():
            raise BadInputError(f"--{option} not found: {g[option]}")
    given = g["inputs"] is not None or g["data"] is not None
    m = load_model(g["torch"], g["onnx"], exporter=g["exporter"], seed=seed, need_feed=not given)
    graph = graph_inputs(m.model, m.what)
    samples, said = load_samples(g["inputs"], g["data"], graph)
    source = (str(g["inputs"]) if g["inputs"] is not None else f"--data {g['data']}" if g["data"] is not None
              else f"the model's {m.first_name} inputs and seeded random variants (seed {seed})")
    if not samples:
        samples = default_samples(m.first, seed, first_name=m.first_name)
    split = split_samples(samples, g["verify_samples"], source)
    calib = load_samples(g["calib"], None, graph, "--calib")[0] if g["calib"] is not None else None
    return m, split, calib, said
