"""The arrays a user gives (`--inputs FILE.npz`, `--calib FILE.npz …`) as a model's feeds: keyed by its input names,
checked (names, shapes, finite values), cast to the dtype the model takes with a word for each cast (never
silently), and a calibration file's batch split into the samples INT8 calibrates on."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from cp_debug.bisect.subjects.calib_paths import CALIB_FORMS, calib_files  # noqa: F401 - read here too
from cp_debug.errors import BadInputError

def load_npz_inputs(path: str | Path, option: str = "--inputs") -> dict[str, np.ndarray]:
    path = Path(path)
    if path.is_dir():
        raise BadInputError(f"{option} {path} is a folder: this command takes one .npz (a folder of samples is what "
                            "`cpdebug fix --inputs DIR` searches over)")
    if not path.is_file():
        raise BadInputError(f"{option} file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: np.asarray(z[k]) for k in z.files}
    except Exception as err:
        raise BadInputError(f"cannot read {option} {path}: not a valid .npz file ({type(err).__name__})") from err


def npz_headers(path: Path, option: str) -> dict[str, np.ndarray]:
    """Each array of an .npz as a zero-stride stand-in of its shape and dtype, read from the headers only."""
    import zipfile

    out = {}
    try:
        with zipfile.ZipFile(path) as z:
            for member in z.namelist():
                if not member.endswith(".npy"):
                    continue
                with z.open(member) as f:
                    version = np.lib.format.read_magic(f)
                    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                        np.lib.format.read_array_header_2_0
                    shape, _, dtype = read(f)
                out[member[:-4]] = np.broadcast_to(np.zeros((), dtype), shape)
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise BadInputError(f"cannot read {option} {path}: not a valid .npz file ({type(err).__name__})") from err
    return out


def npz_shapes(path: str | Path | None, option: str = "--inputs") -> list[dict[str, tuple]]:
    """The input shapes of each sample `path` holds (one .npz, or a folder of them: one sample each), read from the
    files' headers alone; [] where no path is given. What a `--torch` model's dynamic axes are inferred from."""
    return [{k: a.shape for k, a in npz_headers(f, option).items()} for f in sample_files(path)]


def sample_files(path: str | Path | None) -> list[Path]:
    """The sample files `path` holds: itself (an .npz), or a folder's .npz files in name order; [] where none."""
    if path is None:
        return []
    path = Path(path)
    return sorted(path.glob("*.npz")) if path.is_dir() else [path] if path.is_file() else []


def match_inputs(given: dict[str, np.ndarray], names: tuple[str, ...], expected: Mapping[str, tuple | None],
                 what: str, option: str = "--inputs") -> dict[str, np.ndarray]:
    """Key `given` by the model's input names (accepting input0, input1, …), checking names, shapes, finiteness."""
    positional = {f"input{i}": n for i, n in enumerate(names)}
    out: dict[str, np.ndarray] = {}
    for key, arr in given.items():
        name = key if key in names else positional.get(key)
        if name is None:
            also = "input0" if len(names) == 1 else f"input0…input{len(names) - 1}"
            raise BadInputError(f"{option} has an unknown input {key!r}: {what} takes {', '.join(names)} (or {also})")
        out[name] = arr
    missing = [n for n in names if n not in out]
    if missing:
        raise BadInputError(f"{option} lacks {', '.join(missing)}: {what} takes {', '.join(names)}")
    for n, arr in out.items():
        want = expected.get(n)
        if want is not None and (len(want) != arr.ndim
                                 or any(w is not None and w != a for w, a in zip(want, arr.shape))):
            shown = ["?" if w is None else w for w in want]
            raise BadInputError(f"input {n!r} has shape {list(arr.shape)}, but {what} expects {shown}")
        _check_finite(n, arr)
    return out


def cast_inputs(feed: dict[str, np.ndarray], dtypes: Mapping[str, np.dtype], source: str,
                takes: str) -> tuple[dict[str, np.ndarray], list[str]]:
    """`feed` in the dtypes the model takes, and one line for each input cast ("input 'x' is float64 in x.npz; cast
    to float32 as the example input is": `takes` ends it). An integer input (token ids, indices) given as floats is
    cast only where every value is a whole number within the integer's range; else one line refuses it (exit 2)."""
    out, said = dict(feed), []
    for name, arr in feed.items():
        want = np.dtype(dtypes[name]) if dtypes.get(name) is not None else arr.dtype
        if want == arr.dtype:
            continue
        if want.kind in "iu" and arr.dtype.kind in "fiub":
            _check_integral(name, arr, want)
        cast = arr.astype(want)
        if want.kind == "f":
            _check_finite(name, cast, f" once cast to {want} (beyond its range)")
        out[name] = cast
        said.append(f"input {name!r} is {arr.dtype} in {source}; cast to {want} as {takes}")
    return out, said


def calibration_feeds(paths: Sequence[Path | Mapping[str, np.ndarray]], sample: Mapping[str, np.ndarray], what: str,
                      takes: str, declared=None) -> tuple[list[dict[str, np.ndarray]], list[str]]:
    """The feeds INT8 calibrates on, from the `--calib` files (or folders of them, `calib_files`): each input's array
    is one sample (the shape of `sample`, the run's feed) or a batch of them along the first axis (example
    [1,3,32,32], calib [8,3,32,32]: 8 samples; or stacked on a new first axis, [8,1,3,32,32]); every input of a file
    gives the same number. `declared`: the model's input shapes (None for an axis left open): a sample may differ from
    the run's on an open axis (a sentence of other words than the judged one's, `[1, 12]` beside `[1, 14]`), or a
    callable giving them, asked only where a sample's shape is not the run's (a `--torch` model exported then); along
    an open first axis, an array that no whole number of samples makes is one sample of its own length (pythainlp's
    deepcut: a text of 338 characters calibrates, the judged one has 325). Also the casts said (`cast_inputs`)."""
    names = tuple(sample)
    feeds: list[dict[str, np.ndarray]] = []
    said: list[str] = []
    paths = [one for p in paths for one in ([p] if isinstance(p, Mapping) else calib_files(p))]  # a folder's files
    for k, path in enumerate(paths):  # an .npz file, or arrays handed over in-process (the Python API's calib=)
        source = f"calib[{k}]" if isinstance(path, Mapping) else Path(path).name
        option = f"--calib {source}"
        arrays = {n: np.asarray(a) for n, a in path.items()} if isinstance(path, Mapping) else _calib_npz(path)
        given = match_inputs(arrays, names, {}, what, option)
        given, casts = cast_inputs(given, {n: a.dtype for n, a in sample.items()}, source, takes)
        said += [c for c in casts if c not in said]
        if callable(declared) and any(a.shape != sample[n].shape or (a.ndim and a.shape[0] > 1)
                                      for n, a in given.items()):
            declared = declared()
        shapes = declared if isinstance(declared, Mapping) else {}
        rows = {n: _batch_rows(a, sample[n].shape, shapes.get(n)) for n, a in given.items()}
        if all(rows.values()) and len(set(rows.values())) == 1:  # a batch along the model's open batch axis
            counts = dict(rows)
            said.append(f"{option}: a batch of {counts[names[0]]} along the first axis, which the model leaves open: "
                        f"{counts[names[0]]} samples of 1")
        else:
            counts = {n: _samples(option, n, a, sample[n].shape, shapes.get(n)) for n, a in given.items()}
            rows = {}
        if len(set(counts.values())) > 1:
            shown = ", ".join(f"{n}: {c}" for n, c in counts.items())
            raise BadInputError(f"{option}: its inputs hold different numbers of samples ({shown}): give each input "
                                "the same number")
        for k in range(next(iter(counts.values()))):
            feeds.append({n: a[k:k + 1] if rows else _sample(a, k, sample[n].shape, counts[n])
                          for n, a in given.items()})
    return feeds, said


def _batch_rows(arr: np.ndarray, shape: tuple, declared: tuple | None) -> int:
    """The rows of `arr` along a first axis the model declares open (`declared[0]` None), where `arr` has the
    sample's rank, more than one row, and fits the sample on every other axis: each row one sample, as a batch of 40
    images is 40 (not one sample of 40, nor 2 of the judged batch's 16 and a rest refused); 0 where it is no such
    batch (a fixed first axis of 1 splits as before: `_samples`)."""
    shape = tuple(shape)
    if declared is None or len(declared) != len(shape) or not shape or declared[0] is not None:
        return 0
    if arr.ndim != len(shape) or arr.shape[0] < 2 or not _fits(arr.shape[1:], shape[1:], declared[1:]):
        return 0
    return arr.shape[0]


def declared_inputs(model) -> dict[str, tuple | None]:
    """An ONNX model's input shapes as it declares them (None for an axis left open); {} without one."""
    if model is None:
        return {}
    from cp_debug.graph.model import static_dims

    return {i.name: static_dims(i.type) for i in model.graph.input}


def _calib_npz(path: Path) -> dict[str, np.ndarray]:
    """One `--calib` file's arrays; one that is no .npz said with what `--calib` takes."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: np.asarray(z[k]) for k in z.files}
    except Exception as err:
        raise BadInputError(f"--calib {path}: not a valid .npz file ({type(err).__name__}); {CALIB_FORMS}") from err


def _fits(got: tuple, shape: tuple, declared: tuple | None) -> bool:
    """`got` is `shape` but on the axes `declared` leaves open (the model runs any size there)."""
    return len(got) == len(shape) and all(
        g == s or (declared is not None and len(declared) == len(shape) and declared[a] is None)
        for a, (g, s) in enumerate(zip(got, shape)))


def _samples(option: str, name: str, arr: np.ndarray, shape: tuple, declared: tuple | None = None) -> int:
    """How many samples of `shape` `arr` holds (one line naming both shapes where it fits neither way); an axis
    `declared` open (None) may differ from `shape`'s."""
    shape = tuple(shape)
    if arr.shape == shape:
        return 1
    if arr.ndim == len(shape) + 1 and _fits(arr.shape[1:], shape, declared) and arr.shape[0] > 0:
        return arr.shape[0]
    if shape and arr.ndim == len(shape) and _fits(arr.shape[1:], shape[1:], declared and declared[1:]) and shape[0] \
            and arr.shape[0] % shape[0] == 0 and arr.shape[0] > 0:
        return arr.shape[0] // shape[0]
    if shape and arr.ndim == len(shape) and arr.shape[0] > 0 and declared is not None and len(declared) == len(shape) \
            and declared[0] is None and _fits(arr.shape[1:], shape[1:], declared[1:]):
        return 1  # another length along an open first axis, no whole number of samples: one (deepcut's 338 characters)
    batch = [f"N×{shape[0]}" if shape[0] != 1 else "N", *shape[1:]] if shape else ["N"]
    fixed = [a for a in range(1, arr.ndim) if arr.ndim == len(shape) == len(declared or ()) and arr.shape[a] != shape[a]
             and declared[a] is not None]  # an axis the model declares fixed
    also = f"; the model fixes axis {fixed[0]} (a --torch model opens it: --dynamic {name}:{fixed[0]})" if fixed else ""
    raise BadInputError(f"{option}: input {name!r} has shape {list(arr.shape)}, but one sample is {list(shape)} "
                        f"(a batch of N samples: [{', '.join(map(str, batch))}]){also}")


def _sample(arr: np.ndarray, k: int, shape: tuple, count: int = 0) -> np.ndarray:
    if arr.ndim == len(shape) + 1:
        return np.asarray(arr[k])  # a 0-d input's sample (silero-vad's `sr`) stays an array, not a numpy scalar
    if count == 1:
        return arr  # one sample, of the run's shape or of its own along the model's open axes
    b = shape[0] if shape else 1
    return arr[k * b:(k + 1) * b] if arr.shape != tuple(shape) else arr


def _check_finite(name: str, arr: np.ndarray, why: str = "") -> None:
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise BadInputError(f"input {name!r} contains {bad} NaN/Inf values{why}: divergence cannot be measured on "
                            "non-finite inputs; fix the input file")


def _check_integral(name: str, arr: np.ndarray, want: np.dtype) -> None:
    """An integer input's values as given (floats, a wider integer) are whole numbers within `want`'s range."""
    if arr.dtype.kind == "f":
        off = np.flatnonzero(arr != np.round(arr))
        if off.size:
            at = [int(i) for i in np.unravel_index(off[0], arr.shape)]
            raise BadInputError(f"input {name!r} holds non-integer values ({arr.flat[off[0]]:g} at {at}); the model "
                                f"takes {want} there (token ids, indices): they must be integers")
    if arr.dtype.kind in "fiu" and arr.size:
        info = np.iinfo(want)
        lo, hi = arr.min(), arr.max()
        if lo < info.min or hi > info.max:
            raise BadInputError(f"input {name!r} holds values from {lo:g} to {hi:g}, beyond {want}'s range, which "
                                "the model takes there")
