"""The samples of any one-graph model (`--torch FILE.py:FUNC` / `--onnx FILE.onnx`), the generic module recipe's
inputs: `--inputs` one `.npz` or a folder of them (one sample each), or `--data FILE.py:FUNC` yielding feed dicts as
Polygraphy's `load_data` does (running the user's file); else the model's own example (or seeded random) inputs plus
a few seeded random variants. sweep, eval and fix read them here.

Every sample is checked and cast by the reader `cpdebug bisect --inputs` uses (`bisect.subjects.feeds.match_inputs` /
`cast_inputs`): keys are the graph's input names or input0, input1, …; a `label` / `labels` key the graph does not take
is the sample's label (a labelled metric's truth). A folder of samples is read one sample at a time (`SampleSet`), its
names and shapes checked first from the files' headers alone, so a sweep's memory does not grow with the samples;
`--data`'s samples are written to a temporary folder as FUNC() yields them and read back the same way.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cp_debug.errors import BadInputError, CpDebugError

DEFAULT_VARIANTS = 3  # seeded random samples besides the example, when the user gives none
LABEL_KEYS = ("label", "labels")  # a sample's label, where the graph takes no input of that name


@dataclass(frozen=True)
class Sample:
    """One feed (graph input name -> array) and where it came from (a file's stem, `data_3`, `example`, `random_1`)."""

    name: str
    feed: Mapping[str, np.ndarray]
    label: np.ndarray | None = None  # a `label` / `labels` key the graph does not take (accuracy's truth)

    @property
    def shape(self) -> str:
        """Its inputs' shapes in words, `x[1,64,16]` (several inputs: space apart): a model with dynamic axes is
        judged per shape (fix's verification)."""
        return shape_words({n: np.shape(a) for n, a in self.feed.items()})


def shape_words(shapes: Mapping[str, Sequence[int]]) -> str:
    """Inputs' shapes in words, `x[1,64,16]`, space apart (`Sample.shape`)."""
    return " ".join(f"{n}[{','.join(str(int(d)) for d in s)}]" for n, s in shapes.items())


@dataclass(frozen=True)
class GraphInputs:
    """What the graph takes: input names, the shape of each (None: a dynamic dim) and its dtype."""

    names: tuple[str, ...]
    shapes: Mapping[str, tuple]
    dtypes: Mapping[str, np.dtype]
    what: str  # the model in words, for the one-line errors
    # a decoder LLM file's inputs (`decoder_feed.DecoderInputs`): a sample gives its prompt's input_ids (any other
    # input it may give), the mask, positions and empty cache made for each as bisect makes them
    decoder: object = None


def graph_inputs(model, what: str, path: str | Path | None = None) -> GraphInputs:
    """The graph inputs of an ONNX model (initializers left out); `path`: the file it was read from, whose decoder
    inputs (a KV cache: ONNX Runtime GenAI's builder) are made per sample."""
    import onnx

    from cp_debug.graph.model import static_dims

    inits = {i.name for i in model.graph.initializer}
    ins = [i for i in model.graph.input if i.name not in inits]
    decoder = None
    if path is not None and len(ins) > 1:
        from cp_debug.bisect.subjects.decoder_feed import DecoderInputs

        decoder = DecoderInputs.of(model, path)
    return GraphInputs(tuple(i.name for i in ins), {i.name: tuple(static_dims(i.type) or ()) for i in ins},
                       {i.name: np.dtype(onnx.helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type))
                        for i in ins}, what, decoder)


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


def save_sample(path: Path, sample: Sample) -> None:
    """A sample as an .npz keyed by the graph's input names, and its label under `label` where it has one (what
    `--inputs` and `fix --check` read)."""
    label = {} if sample.label is None else {"label": np.asarray(sample.label)}
    with open(path, "wb") as f:
        np.savez(f, **{k: np.asarray(v) for k, v in sample.feed.items()}, **label)


def read_saved(files: Mapping[str, Path], graph: GraphInputs) -> list[Sample]:
    """Samples written by `save_sample` (a fix DIR's held-out inputs: sample name -> file), checked as `--inputs`
    are."""
    return [_checked(name, _npz(p, "--check"), graph, p.name) for name, p in files.items()]


def _npz_files(path: Path, option: str) -> list[Path]:
    if path.is_dir():
        files = sorted(path.glob("*.npz"))
        if not files:
            raise BadInputError(f"{option} {path}: the folder holds no .npz file (one sample per .npz)")
        return files
    if path.is_file():
        return [path]
    raise BadInputError(f"{option} not found: {path}")


def _from_npz(path: Path, graph: GraphInputs, option: str) -> tuple[list[Sample], list[str]]:
    said: list[str] = []
    out = []
    for f in _npz_files(path, option):
        sample, casts = _cast(f.stem, _npz(f, option), graph, f"{option} {f.name}", f.name)
        out.append(sample)
        said += [c for c in casts if c not in said]
    return out, said


def _from_data(target: str, graph: GraphInputs, problems: list[str] | None = None) -> tuple[list[Sample], list[str]]:
    """`--data FILE.py:FUNC`: FUNC() yields (or returns a list of) dicts of arrays, one per sample; the file runs.
    `problems`: where given, a sample that does not fit is one line there instead of an error."""
    out: list[Sample] = []
    said = _data_samples(target, graph, out.append, problems)
    if not out and not problems:
        raise BadInputError(f"--data {target} yielded no sample")
    return out, said


def _data_samples(target: str, graph: GraphInputs, keep, problems: list[str] | None) -> list[str]:
    """Each sample FUNC() yields, checked and cast, handed to `keep` as it comes (nothing held here); the casts
    said."""
    from cp_debug.bisect.subjects.loaders import user_function

    fn = user_function(target, "--data")
    said: list[str] = []
    for k, feed in enumerate(_user_feeds(fn, target)):
        try:
            if not isinstance(feed, Mapping):
                raise BadInputError(f"--data {target}: sample {k} is a {type(feed).__name__}, not a dict of arrays "
                                    "(input name -> array)")
            sample, casts = _cast(f"data_{k}", {n: np.asarray(a) for n, a in feed.items()}, graph,
                                  f"--data sample {k}", f"--data sample {k}")
        except BadInputError as err:
            if problems is None:
                raise
            problems.append(f"data_{k}: {str(err).splitlines()[0]}")
            continue
        keep(sample)
        said += [c for c in casts if c not in said]
    return said


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
    from cp_debug.bisect.subjects.feeds import load_npz_inputs

    return load_npz_inputs(path, option)


def _cast(name: str, given: dict, graph: GraphInputs, option: str, source: str) -> tuple[Sample, list[str]]:
    from cp_debug.bisect.subjects.feeds import cast_inputs

    given, label = _label(given, graph)
    feed = _matched(given, graph, option)
    feed, said = cast_inputs(feed, graph.dtypes, source, f"{graph.what} takes")
    return Sample(name, feed, label), said


def _label(given: Mapping, graph: GraphInputs) -> tuple[dict, np.ndarray | None]:
    """The feed without a `label` / `labels` key the graph does not take, and that label (None: none)."""
    given = dict(given)
    key = next((k for k in LABEL_KEYS if k in given and k not in graph.names), None)
    return given, (np.asarray(given.pop(key)) if key is not None else None)


def _checked(name: str, given: dict, graph: GraphInputs, option: str) -> Sample:
    given, label = _label(given, graph)
    return Sample(name, _matched(given, graph, option), label)


def _matched(given: dict, graph: GraphInputs, option: str) -> dict[str, np.ndarray]:
    from cp_debug.bisect.subjects.feeds import match_inputs

    if graph.decoder is not None:  # the prompt's ids given, the rest made (bisect's decoder_feed)
        from cp_debug.bisect.subjects.decoder_feed import decoder_feed

        given = decoder_feed(graph.decoder, _prompt(given, graph, option))
    return match_inputs(given, graph.names, graph.shapes, graph.what, option)


def _prompt(given: Mapping, graph: GraphInputs, option: str) -> dict:
    """A decoder file's sample: its input_ids and any other input of the file it gives; one line (exit 2) where it
    lacks the ids or gives an input the file does not take."""
    from cp_debug.bisect.subjects.decoder_feed import IDS

    positional = {f"input{i}": n for i, n in enumerate(graph.names)}  # input0, input1, … as match_inputs takes them
    given = {k if k in graph.names else positional.get(k, k): v for k, v in given.items()}
    unknown = [k for k in given if k not in graph.names]
    if IDS not in given or unknown:
        why = f"lacks {IDS}" if IDS not in given else f"has an unknown input {unknown[0]!r}"
        raise BadInputError(f"{option} {why}: {graph.what} is a decoder taking {IDS} (the prompt's token ids; the "
                            f"attention mask, positions and empty cache are made), or any of {', '.join(graph.names)}")
    return given


# -- a set read one sample at a time (sweep, eval) -----------------------------------------------------------------
@dataclass(frozen=True)
class SampleSet:
    """The user's samples in order, each read when iterated (a folder of .npz: one file at a time; `--data`: the
    samples FUNC() yielded, each written as it came to an .npz of a temporary folder, `spill`, and read back the
    same way), named up front. `said`: the casts said so far."""

    names: tuple[str, ...]
    source: str  # where they came from, in words
    graph: GraphInputs
    files: tuple[Path, ...] = ()
    option: str = "--inputs"
    said: list[str] = field(default_factory=list)
    bad: tuple[str, ...] = ()  # --data: one line per sample that did not fit, found as FUNC() yielded them
    spill: object = None  # --data: the TemporaryDirectory its samples were written to (removed with the set)

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self) -> Iterator[Sample | SampleError]:
        return (self.read(i) for i in range(len(self.names)))

    def read(self, index: int) -> Sample | SampleError:
        """Sample `index`, read now; or the `SampleError` that stands in its place where reading it fails (a NaN, a
        value its dtype cannot hold): the caller records it as failed and goes on."""
        f = self.files[index]
        try:
            sample, casts = _cast(f.stem, _npz(f, self.option), self.graph, f"{self.option} {f.name}", f.name)
        except CpDebugError as err:
            return SampleError(f.stem, str(err).splitlines()[0])
        self.said.extend(c for c in casts if c not in self.said)
        return sample

    def shapes(self) -> dict[str, dict[str, tuple[int, ...]]]:
        """Each sample's input shapes (sample name -> {input: shape}), read from the .npz headers alone; a sample
        whose headers do not fit the graph is left out (`problems` says why)."""
        from cp_debug.bisect.subjects.feeds import npz_headers

        out = {}
        for name, f in zip(self.names, self.files):
            try:
                given, _ = _label(npz_headers(f, self.option), self.graph)
                feed = _matched(given, self.graph, self.option)
            except CpDebugError:
                continue
            out[name] = {k: tuple(int(d) for d in np.shape(v)) for k, v in feed.items()}
        return out

    def problems(self) -> list[str]:
        """One line per sample whose input names or shapes do not fit the graph, read from the .npz headers alone
        (nothing is loaded); [] where every sample fits."""
        from cp_debug.bisect.subjects.feeds import npz_headers

        out = list(self.bad)
        for f in self.files:
            try:
                given, _ = _label(npz_headers(f, self.option), self.graph)
                _matched(given, self.graph, f"{self.option} {f.name}")
            except CpDebugError as err:
                out.append(f"{f.name}: {str(err).splitlines()[0]}")
        return out


@dataclass(frozen=True)
class SampleError:
    """A sample that could not be read or does not fit the graph, and why (one line)."""

    name: str
    reason: str


def sample_set(given: str | Path | None, data: str | None, graph: GraphInputs, option: str = "--inputs") -> SampleSet:
    """The samples of a sweep or an eval: `--inputs` (one .npz or a folder) read lazily, or `--data FILE.py:FUNC`'s
    (FUNC() runs here, every sample checked as it comes; a bad one is one line each, all said in one error)."""
    if (given is None) == (data is None):
        raise BadInputError(f"give the samples: {option} FILE.npz|DIR (one sample per .npz) or --data FILE.py:FUNC")
    if given is not None:
        files = tuple(_npz_files(Path(given), option))
        return SampleSet(tuple(f.stem for f in files), str(given), graph, files=files, option=option)
    import tempfile

    bad: list[str] = []
    spill = tempfile.TemporaryDirectory(prefix="cpdebug-data-")
    files: list[Path] = []

    def keep(sample: Sample) -> None:  # one sample at a time: the memory does not grow with FUNC()'s samples
        files.append(Path(spill.name) / f"{sample.name}.npz")
        save_sample(files[-1], sample)

    said = _data_samples(data, graph, keep, bad)
    if not files and not bad:
        raise BadInputError(f"--data {data} yielded no sample")
    return SampleSet(tuple(f.stem for f in files), f"--data {data}", graph, files=tuple(files), option="--data",
                     said=said, bad=tuple(bad), spill=spill)


def check_fit(samples: SampleSet, stream=None) -> None:
    """Every sample checked against the graph once, before anything runs: each that does not fit is one line on
    `stream` (stderr), and one BadInputError (exit 2) counts them."""
    import sys

    bad = samples.problems()
    if not bad:
        return
    for line in bad:
        print(f"cpdebug: sample {line}", file=stream or sys.stderr, flush=True)
    raise BadInputError(f"{len(bad)} of {len(samples) + len(samples.bad)} samples do not fit {samples.graph.what} "
                        "(each said above): fix or remove them")
