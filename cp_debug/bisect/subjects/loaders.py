"""Turn what the user names (`--torch FILE.py:FUNC`, `--onnx FILE.onnx`, `--inputs FILE.npz`) into a Subject."""

from __future__ import annotations

import importlib.util
import inspect
import os
import sys
import sysconfig
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx

from cp_debug.bisect.subjects.feeds import cast_inputs, load_npz_inputs, match_inputs, sample_files
from cp_debug.bisect.subjects.model_facts import OnnxFacts, TorchFacts
from cp_debug.bisect.subjects.subject import Stage, Subject, onnx_only_tables
from cp_debug.errors import BadInputError, UserCodeError, first_line, note_user_file
from cp_debug.export.dynamic import FROM_SAMPLES, said_of
from cp_debug.files import sha256_file

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.export.dynamic import DynamicAxes


def user_function(target: str, option: str = "--torch", seed: int = 0):
    """The function FUNC of `FILE.py:FUNC`, its file imported (run) as a module of its own, with FILE's folder on
    `sys.path` while it imports; `option` names the flag in the one-line errors. Running the user's file is what
    the option asks for (its help says so): nothing else in cp_debug executes a file it is given. Python's, numpy's
    and torch's random generators are seeded from `seed` (`--seed`) before the file runs, so what it draws on import
    is the same on every run."""
    from cp_debug.determinism import seed_all
    from cp_debug.imports import held

    file, _, func = target.rpartition(":")
    if not file or not func:
        if option == "--torch" and (Path(target) / "config.json").is_file():
            raise BadInputError(f"--torch {target}: a Hugging Face folder is read with --generate N (its causal LM "
                                "decoded against the deployed file); without it give FILE.py:FUNC")
        raise BadInputError(f"{option} wants FILE.py:FUNC (got {target!r})")
    path = Path(file)
    if not path.is_file():
        raise BadInputError(f"{option} file not found: {path}")
    mod_name = _module_name(path)
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise BadInputError(f"{option} {path}: not a Python file (give FILE.py:FUNC)")
    user = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = user
    folder = path.parent.resolve()
    with held():  # sys.path edited: no import that edits it too (OpenCV's loader) runs meanwhile (imports.py)
        sys.path.insert(0, str(folder))
        note_user_file(path)
        before = set(sys.modules)
        digest = sha256_file(path)  # FILE.py as it runs now (it runs afresh on each load)
        seed_all(seed)
        try:
            spec.loader.exec_module(user)
        except Exception as err:
            raise UserCodeError.of(err, f"importing {path.name}") or BadInputError(
                f"cannot import {path}: {type(err).__name__}: {first_line(err)}") from err
        finally:
            sys.path.pop(0)
            new = set(sys.modules) - before
            _note_beside(folder, new)
            _remember(path, digest, new)
    fn = getattr(user, func, None)
    if not callable(fn):
        raise BadInputError(f"{path} has no function {func!r}")
    return fn


def _class_code(module) -> list[tuple[str, str]]:
    """`user_code` of the file the in-process module's class is defined in (its helpers keyed with it); a class with
    no file (a notebook's): a key of its own each time, so that a changed helper never meets a stale graph."""
    try:
        file = Path(inspect.getfile(type(module)))
    except (TypeError, OSError):
        file = None
    if file is None or not file.is_file():
        import uuid

        return [("<no file>", uuid.uuid4().hex)]
    return user_code(file)


def _module_name(path: Path) -> str:
    """The name a user's FILE.py runs as (`user_function`), one per file."""
    return f"cpdebug_user_{abs(hash(str(path.resolve())))}"


@dataclass(frozen=True)
class GivenModule:
    """A model handed over in-process (the Python API: `cp_debug.bisect(module, inputs, ...)`): what a `--torch`
    FILE.py:FUNC's FUNC() returns, (module, example inputs), with no file to run."""

    module: object  # a torch.nn.Module
    example: object  # a tensor, a tuple of tensors, a dict of keyword tensors, or (args..., {kwargs})

    @property
    def name(self) -> str:
        return type(self.module).__name__

    def __str__(self) -> str:  # where a FILE.py:FUNC is named in a line, the module's class
        return self.name


def given_inputs(inputs: "str | Path | Mapping[str, np.ndarray] | None") -> tuple[dict | None, str | None]:
    """(the samples, what they are called in a line): an .npz file (`--inputs`) read, or arrays handed over in-process
    (the Python API) as they are."""
    if inputs is None:
        return None, None
    if isinstance(inputs, Mapping):
        return {k: np.asarray(v) for k, v in inputs.items()}, "the inputs given"
    return load_npz_inputs(inputs), Path(inputs).name


def _example_of(module, given: "dict | None", who: str):
    """The example inputs of a module returned alone: the sample given (`--inputs`), by the forward's parameter names
    where its keys are among them, else in the file's order."""
    import inspect

    import torch

    if given is None:
        raise BadInputError(f"{who} returned a module and no example inputs: return (module, example_inputs_tuple), "
                            "or give --inputs FILE.npz")
    names = inspect.signature(module.forward).parameters
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in given.items()}
    return dict(tensors) if set(tensors) <= set(names) else tuple(tensors.values())


def _first_sample(path: "str | Path | None") -> "dict | None":
    """The first sample of an .npz file or a folder of them (one sample each); None where there is none."""
    files = sample_files(path)
    return load_npz_inputs(files[0]) if files else None


def torch_subject(target: "str | GivenModule", inputs: "str | Path | Mapping[str, np.ndarray] | None" = None,
                  exporter: str = "auto", seed: int = 0, *,
                  dynamic: "DynamicAxes | None" = None, shapes: Sequence[Mapping[str, tuple]] = (),
                  ranged: "DynamicAxes | None" = None, example_at: "str | Path | None" = None) -> Subject:
    """`FILE.py:FUNC` where FUNC() returns (module, example_inputs_tuple), or the module alone where `inputs` are
    given, or samples at `example_at` (an .npz or a folder of them: the first is the example; `_example_of`). FUNC()
    runs with the random generators seeded from `seed` (`--seed`), as the file's import does: a build() that draws
    random weights or example inputs (`torch.randn`) gives the same model on every run, and the same graph, so a
    repeat hits the export cache. Its inputs' dynamic axes (`export/dynamic.py`) are `dynamic` (`--dynamic`), else
    what the file's `dynamic()` returns, else those whose size differs between the example and the samples
    (`shapes`: each sample's input shapes, the `inputs` file's besides), said in the subject's warnings; none:
    exported at the example's shape. `ranged`: the axes a declared range moves (`export.dynamic.of_range`), exported
    dynamic, the declared ones holding them."""
    import torch

    from cp_debug.determinism import seed_all
    from cp_debug.export.cache import export_cached

    if isinstance(target, GivenModule):  # in-process: no file, the module's class's file keys its graph
        path, func, got = None, target.name, (target.module, target.example)
        if not isinstance(target.module, torch.nn.Module):
            raise BadInputError(f"the model must be a torch.nn.Module, an ONNX file or an onnx.ModelProto (got "
                                f"{type(target.module).__name__})")
    else:
        fn = user_function(target, "--torch", seed=seed)
        file, _, func = target.rpartition(":")
        path = Path(file)
        seed_all(seed)  # FUNC() draws from the seed itself, whatever the file drew while it imported
        got = _call_user(fn, f"in {func}()")
    if isinstance(got, torch.nn.Module):  # a trained model alone: the sample given is its example
        first = given_inputs(inputs)[0] if inputs is not None else _first_sample(example_at)
        got = (got, _example_of(got, first, f"{target}()"))
    if not (isinstance(got, tuple) and len(got) == 2 and isinstance(got[0], torch.nn.Module)):
        raise BadInputError(f"{target}() must return (module, example_inputs_tuple)")
    module, (args, keywords) = got[0], _split_example(got[1])
    example = (*args, *keywords.values())
    if not all(isinstance(t, torch.Tensor) for t in example):
        raise BadInputError(f"{target}(): every example input must be a torch.Tensor (positional, or keyword in a "
                            "dict: {'input_ids': ..., 'attention_mask': ...})")
    told = _to_eval(module)
    said = list(told)
    input_names = _forward_names(module, len(args)) + tuple(keywords)
    if len(set(input_names)) != len(input_names):
        raise BadInputError(f"{target}(): keyword input(s) {sorted(set(keywords) & set(input_names[:len(args)]))} "
                            "also given by position")
    if keywords:
        by_keyword(module, len(args), tuple(keywords))
    with torch.no_grad():
        out = _call_user(module, "on the example inputs", *example)
    output_names = output_names_of(out)
    if not output_names:
        raise BadInputError(f"{target}(): the module's forward returned no tensor ({type(out).__name__})")
    ex_np = {n: t.detach().cpu().numpy() for n, t in zip(input_names, example)}
    given, given_name = given_inputs(inputs)
    beside = getattr(sys.modules.get(_module_name(path)), "dynamic", None) if path else None  # FILE.py's dynamic()
    axes = _dynamic_axes(beside, dynamic, input_names, {n: a.shape for n, a in ex_np.items()},
                         [*shapes, *([{k: a.shape for k, a in given.items()}] if given is not None else [])],
                         f"{func}()'s model", ranged)
    code = {"user_code": user_code(path) if path else _class_code(module)}
    spec = axes
    stage = Stage(
        name=path.stem if path else func, input_names=input_names, output_names=output_names, module=module,
        example_inputs=example,
        export=lambda: export_cached(module, example, input_names, output_names, exporter=exporter, extra=code,
                                     dynamic=spec),
        code_key=code)
    if axes is not None and axes.source == FROM_SAMPLES:  # exported now: an axis the model ties to a static size
        axes = axes.kept_in(stage.onnx())  # (a weight's) is none, and a sample of another size there is refused
    said += said_of(axes.to_json() if axes else None)
    feed = ex_np
    if given is not None:
        expected = {n: a.shape for n, a in ex_np.items()}
        feed = match_inputs(given, input_names, axes.free(expected) if axes else expected, f"{func}()'s model")
        feed, cast = cast_inputs(feed, {n: a.dtype for n, a in ex_np.items()}, given_name,
                                 "the example input is")
        said += cast
    else:
        match_inputs(feed, input_names, {}, f"{func}()'s model")
    return Subject(name=f"{path.name}:{func}" if path else func, stages=[stage], inputs=feed,
                   facts=TorchFacts(str(target) if path else f"<{func}>", type(module).__name__, given_name and (
                                        str(inputs) if path or not isinstance(inputs, Mapping) else "<arrays>"),
                                    exporter, axes.to_json() if axes else None),
                   default_level="block", warnings=said, told=told)


def _dynamic_axes(user, given: "DynamicAxes | None", input_names: tuple[str, ...], example: Mapping[str, tuple],
                  shapes: Sequence[Mapping[str, tuple]], what: str,
                  ranged: "DynamicAxes | None" = None) -> "DynamicAxes | None":
    """The dynamic axes of a `--torch` model, named and checked (`DynamicAxes.named`): `--dynamic`'s, else those of
    the file's `dynamic()` (`user`, run as the user's code), else those the samples' shapes differ in from the
    example's; None: none. A declared range (`ranged`: the axes it moves) is held by the declared axes, else its
    own are taken (`export.dynamic.with_range`)."""
    from cp_debug.export.dynamic import from_user, inferred, with_range

    if not given and callable(user):
        given = from_user(_call_user(user, "in dynamic()"), input_names, "dynamic()")
    if ranged:
        return with_range(given, ranged, input_names, example, what)
    if not given:
        given = inferred(example, shapes, input_names)
    return given.named(input_names, example, what) if given else None


def onnx_subject(path: str | Path, inputs: str | Path | None = None, seed: int = 0, *, seeded: bool = True,
                 ids: np.ndarray | None = None) -> Subject:
    """An ONNX file as a one-stage subject, fed `inputs` (an .npz), else seeded random inputs; `seeded=False`: no
    feed at all, for a caller that brings its own samples (a graph with dynamic axes needs no fixed shape then).
    A decoder LLM file (decoder_feed.py) is fed its token ids (`ids`, else --inputs' input_ids, else seeded) with the
    mask, positions and empty cache made."""
    from cp_debug.bisect.subjects.decoder_feed import (IDS, DecoderInputs, decoder_feed, present_of, seeded_ids,
                                                       without_sliding_presents)
    from cp_debug.graph.model import load_onnx, named_nodes, static_dims

    model, named = named_nodes(load_onnx(path), Path(path).name)
    inits = {i.name for i in model.graph.initializer}
    ins = [i for i in model.graph.input if i.name not in inits]
    names = tuple(i.name for i in ins)
    shapes = {i.name: static_dims(i.type) or () for i in ins}
    said, unwritten = list(named), set()
    dec = DecoderInputs.of(model, path)
    if dec is not None:  # a decoder LLM's sliding-window caches left out, fed here or by a caller's samples (sweep)
        model, sliding = without_sliding_presents(model, dec)
        said = [*said, *sliding]
        unwritten = {present_of(n) for n in dec.sliding}
    if dec is not None and seeded:  # a decoder LLM: the mask, positions and empty cache made from its token ids
        given = {IDS: ids} if ids is not None else given_inputs(inputs)[0] if inputs is not None else \
            {IDS: seeded_ids(dec, seed)}
        feed = decoder_feed(dec, given)
    elif inputs is not None:
        given, given_name = given_inputs(inputs)
        feed = match_inputs(given, names, shapes, os.path.basename(str(path)))
        dtypes = {i.name: onnx.helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type) for i in ins}
        feed, cast = cast_inputs(feed, dtypes, given_name, f"{Path(path).name} takes")
        said = [*said, *cast]
    else:
        rng = np.random.default_rng(seed)
        feed = {}
        for i in ins if seeded else ():
            shp = shapes[i.name]
            if any(d is None for d in shp):
                raise BadInputError(f"input {i.name!r} of {path} has dynamic dims {list(shp)}: give --inputs FILE.npz")
            dt = onnx.helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type)
            feed[i.name] = rng.standard_normal(shp).astype(dt) if np.issubdtype(dt, np.floating) else \
                np.zeros(shp, dtype=dt)
    if feed:  # an If the sample decides runs as its taken branch, so the layers inside are probed (graph/branches.py)
        from cp_debug.graph.branches import inline_taken_branches

        inlined = inline_taken_branches(model, feed)
        model, said = inlined.model, [*said, *inlined.said]
    stage = Stage(name=Path(path).stem, input_names=names, output_names=tuple(o.name for o in model.graph.output),
                  onnx_model=model, exporter="given")
    if unwritten:  # no probe either: a sliding-window layer's cache buffer (decoder_feed.without_sliding_presents)
        stage._trace, stage._map = onnx_only_tables(model)
        stage._trace = replace(stage._trace, order=tuple(p for p in stage._trace.order
                                                         if stage._map.tensors.get(p) not in unwritten))
    return Subject(name=str(path), stages=[stage], inputs=feed,
                   facts=OnnxFacts(str(path), None if inputs is None else "<arrays>" if isinstance(inputs, Mapping)
                                   else str(inputs), seed),
                   default_level="all", warnings=said)


def output_names_of(out) -> tuple[str, ...]:
    """A name for each tensor a forward returns, in the order torch.onnx flattens them: `output0` for one tensor,
    `output0`, `output1`… for a tuple or list, the keys of a dict or ModelOutput, a dataclass's fields; nested
    ones joined with `_` (`aux_0`). `None` entries are no outputs (the exporters leave them out too)."""
    from cp_debug.sites import tensors_in

    names: list[str] = []
    for path, _ in tensors_in(out):
        parts = [f"output{step}" if k == 0 and isinstance(step, int) else str(step) for k, step in enumerate(path)]
        name = "_".join(parts) or "output0"
        while name in names:
            name += "_"
        names.append(name)
    return tuple(names)


def _split_example(example) -> tuple[tuple, dict]:
    """build()'s example inputs as (positional, keyword): a tensor, a tuple or list of them, a dict of keyword
    tensors (HF style: `{"input_ids": ..., "attention_mask": ...}`), or a tuple whose last item is such a dict
    (torch.export's `args, kwargs`)."""
    if isinstance(example, Mapping):
        return (), dict(example)
    if isinstance(example, (tuple, list)):
        if example and isinstance(example[-1], Mapping):
            return tuple(example[:-1]), dict(example[-1])
        return tuple(example), {}
    return (example,), {}


def by_keyword(module, n_args: int, keywords: tuple[str, ...]) -> None:
    """`module` called with its inputs all by position from here on: the first `n_args` as they are, the rest as
    the keyword arguments `keywords` of its class's forward. Every caller — the module trace, both exporters (the
    ONNX inputs take the keywords' names), the torch runners — passes a stage's inputs by position; the forward set
    on the instance is a bound method, so a deep copy (each torch runner's) calls its own copy's forward."""
    module.cpdebug_keyword_inputs = (n_args, keywords)
    module.forward = types.MethodType(_keyword_forward, module)


def _keyword_forward(self, *args):
    n_args, keywords = self.cpdebug_keyword_inputs
    return type(self).forward(self, *args[:n_args], **dict(zip(keywords, args[n_args:])))


def _to_eval(module) -> tuple[str, ...]:
    """`module` in eval mode, and a line saying so where build() left it (or any of its modules) in train mode:
    dropout drawing afresh on every run and BatchNorm normalising by the batch would make every comparison
    meaningless."""
    training = sum(m.training for m in module.modules())
    module.eval()
    if not training:
        return ()
    return (f"the model was in train mode ({training} of its modules); switched to eval mode for the comparison "
            "(in train mode dropout draws afresh on every run and BatchNorm uses the batch's statistics): call "
            ".eval() in build() to silence this",)


def _forward_names(module, n: int) -> tuple[str, ...]:
    try:
        params = [p for p in inspect.signature(module.forward).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    names = [p.name for p in params][:n]
    if len(names) != n or len(set(names)) != n:
        return tuple(f"input{i}" for i in range(n))
    return tuple(names)



def _call_user(fn, doing: str, *args):
    """`fn(*args)`, the user's code: what it raises from their file, or from their model's modules where `fn` is
    the model (`UserCodeError.in_model`), is their error (`UserCodeError`, exit 2)."""
    import torch

    try:
        return fn(*args)
    except Exception as err:
        user = UserCodeError.in_model(err, {id(m): n for n, m in fn.named_modules()}, doing) \
            if isinstance(fn, torch.nn.Module) else UserCodeError.of(err, doing)
        if user is None:
            raise
        raise user from err


def _note_beside(folder: Path, modules: set[str]) -> None:
    """The modules a user's file imported from its own folder (their model's classes, say) are theirs too."""
    for name in modules:
        file = getattr(sys.modules.get(name), "__file__", None)
        if file and Path(file).resolve().is_relative_to(folder) and not _installed(file):
            note_user_file(file)


def _installed(file: str) -> bool:
    """In a site-packages or dist-packages folder: an installed package (a virtualenv in the user's folder too)."""
    return bool({"site-packages", "dist-packages"} & set(Path(file).parts))


_PACKAGE = os.path.realpath(Path(__file__).parents[2]) + os.sep  # cp_debug's own code
_CODE: dict[str, str] = {}  # a file of the user's code (real path) -> sha256 of its bytes as this process loaded it
_IMPORTED_BY: dict[str, list[str]] = {}  # a --torch FILE.py (real path) -> `_own_code` of what its import loaded


def user_code(file: Path) -> list[tuple[str, str]]:
    """The user's code a `--torch FILE.py:FUNC` graph may hang on beyond its module classes' files (which
    `export.cache.export_key` hashes), as (path relative to FILE.py's folder, sha256) — what the export cache keys
    the graph by besides (`export_cached(extra=...)`), so that an edited helper is another key, never a stale graph:
    FILE.py itself (the helper functions forward() calls), every module loaded from FILE.py's folder or below however
    it was imported (FILE.py's imports, a lazy import in forward, an earlier load's in a long-lived process), and
    what FILE.py's import loaded of the user's own code elsewhere (`_own_code`: a package of theirs installed
    editable). Each file's bytes are those this process loaded (hashed when its import ran, else when first seen):
    Python does not import a module again, so a file edited under a long-lived process (`cpdebug serve`) keeps the
    key of the code that still runs there. Code only an installed package holds is keyed by nothing but torch's and
    onnx's versions: give `--no-cache` where forward() calls into a package you edit in site-packages."""
    folder = file.parent
    roots = (os.path.abspath(folder) + os.sep, os.path.realpath(folder) + os.sep)
    files = {os.path.realpath(file), *_IMPORTED_BY.get(os.path.realpath(file), ())}
    for m in list(sys.modules.values()):
        f = getattr(m, "__file__", None)
        # a string test first: resolving each of ~1,200 loaded modules' paths would take 0.2-0.4 s
        if isinstance(f, str) and os.path.abspath(f).startswith(roots) and not _installed(f) and os.path.isfile(f):
            files.add(os.path.realpath(f))
    base = os.path.realpath(folder)
    return [(os.path.relpath(f, base), _CODE.get(f) or _CODE.setdefault(f, sha256_file(f))) for f in sorted(files)]


def _remember(path: Path, digest: str, modules: set[str]) -> None:
    """What loading FILE.py (`path`, its bytes' `digest`) brought in, for `user_code`: the user's own modules among
    the newly imported `modules`, each hashed now, as just loaded."""
    own = _own_code(modules)
    _CODE[os.path.realpath(path)] = digest
    for f in own:
        _CODE[f] = sha256_file(f)
    _IMPORTED_BY[os.path.realpath(path)] = own


def _own_code(modules: set[str]) -> list[str]:
    """The real paths of `modules`' files that are no installed package, no standard library and not cp_debug: the
    user's own code wherever it lies (beside FILE.py, a package of theirs installed editable, a folder on sys.path)."""
    skip = (_PACKAGE, *{os.path.realpath(sysconfig.get_paths()[k]) + os.sep for k in ("stdlib", "platstdlib")})
    found = set()
    for name in modules:
        file = getattr(sys.modules.get(name), "__file__", None)
        if isinstance(file, str) and os.path.isfile(file) and not _installed(file) \
                and not os.path.realpath(file).startswith(skip):
            found.add(os.path.realpath(file))
    return sorted(found)
