"""Export a torch module to ONNX in memory, keeping the exporter's warnings and who they point at.

The torch.export-based exporter is tried first; when it cannot capture the model (data-dependent control
flow, say) the TorchScript exporter takes over — and its TracerWarnings ("Converting a tensor to a Python
boolean might cause the trace to be incorrect") are exactly the evidence of a branch frozen at export time,
so each warning is attributed to the modules whose `forward` holds the warned line.
"""

from __future__ import annotations

import inspect
import io
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import onnx

from cp_debug.errors import BadInputError, plain
from cp_debug.graph.model import fold_initializer_identities
from cp_debug.graph import onnx_files
from cp_debug.graph.onnx_files import keep
from cp_debug.graph.onnx_read import read_onnx
from cp_debug.graph.weight_store import new_file
from cp_debug.export.torchlib_ops import torchlib_ops_once

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.export.dynamic import DynamicAxes

_IGNORED_CATEGORIES = ("DeprecationWarning", "FutureWarning", "UserWarning")


@dataclass(frozen=True)
class ExportWarning:
    category: str
    message: str
    filename: str
    lineno: int
    modules: tuple[str, ...] = ()  # qualified names whose forward() contains filename:lineno

    def short(self) -> str:
        return f"{self.category}: {self.headline()} ({os.path.basename(self.filename)}:{self.lineno})"

    def headline(self) -> str:
        """The message's first sentence (at most 160 characters): what it says, without torch's advice after it."""
        text = plain(self.message).strip()
        first = text.splitlines()[0] if text else self.category
        sentence = first.split(". ", 1)[0].rstrip(".")
        return sentence[:160]

    @property
    def freezes_control_flow(self) -> bool:
        """The tracer turned a tensor into a Python value (a bool for an `if`, an int for a loop): the graph holds
        the branch the example input took, whatever later inputs would take."""
        return self.category == "TracerWarning" and "Python" in self.message

    def branch(self) -> str:
        """`models.py:191 `if x.mean() > 0:`` (the user's line, read from their file), for a frozen branch."""
        import linecache

        line = linecache.getline(self.filename, self.lineno).strip()
        where = f"{os.path.basename(self.filename)}:{self.lineno}"
        return f"{where} `{line}`" if line else where


def folded(found: "list[ExportWarning] | tuple[ExportWarning, ...]") -> list[str]:
    """`found` as one line a message and file: `TracerWarning: … (functional.py:6865, 6874, 6885 ×3)` — torch's
    own nn.MultiheadAttention code says the same thing from a few lines, once per call, and each occurrence kept
    apart is a wall of the same text. In first-seen order; a line said more than once carries its count."""
    groups: dict[tuple[str, str, str], dict[int, int]] = {}
    for w in found:
        lines = groups.setdefault((w.category, w.headline(), os.path.basename(w.filename)), {})
        lines[w.lineno] = lines.get(w.lineno, 0) + 1
    out = []
    for (category, headline, name), lines in groups.items():
        where = ", ".join(f"{n} ×{c}" if c > 1 else str(n) for n, c in lines.items())
        out.append(f"{category}: {headline} ({name}:{where})")
    return out


@dataclass(frozen=True)
class ExportResult:
    model: onnx.ModelProto
    exporter: str  # "dynamo" | "torchscript"
    warnings: tuple[ExportWarning, ...] = ()
    fallback_reason: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)
    cache: str | None = None  # "hit": read from export/cache.py's folder; "stored": exported and kept; None: neither


def export_module(module, example_inputs: tuple, input_names, output_names, *, dynamic_axes=None,
                  exporter: str = "auto", opset: int = 17, dynamic: "DynamicAxes | None" = None) -> ExportResult:
    """Export `module` (eval mode) with `example_inputs`. exporter: auto | dynamo | torchscript. `dynamic`: the
    inputs' dynamic axes (`export/dynamic.py`: torch.export's `dynamic_shapes`, the TorchScript exporter's
    `dynamic_axes`), each checked to be dynamic in the graph; `dynamic_axes`: the TorchScript exporter's own dict."""
    if exporter not in ("auto", "dynamo", "torchscript"):
        raise BadInputError(f"unknown exporter {exporter!r}: use auto, dynamo or torchscript")
    module.eval()
    fallback = None
    if exporter in ("auto", "dynamo"):
        try:
            model, warns = _run_export(module, example_inputs, input_names, output_names, dynamic_axes,
                                       opset=max(opset, 18), dynamo=True, dynamic=dynamic)
        except Exception as err:  # the torch.export path failing is expected for some models
            if exporter == "dynamo":
                raise BadInputError(f"torch.export-based ONNX export failed: {_first_line(err)}") from err
            fallback, failed = _first_line(err), err
        else:
            _check_dynamic(model, dynamic, "torch.export")
            return ExportResult(model, "dynamo", _attribute(warns, module))
    if dynamic:
        dynamic_axes = {**(dynamic_axes or {}), **dynamic.onnx_axes()}
    try:
        model, warns = _run_export(module, example_inputs, input_names, output_names, dynamic_axes,
                                   opset=opset, dynamo=False)
    except Exception as err:  # each exporter's reason said: the torch.export one is often the one to act on
        if fallback is None:
            raise BadInputError(f"ONNX export failed with the TorchScript exporter: {_first_line(err)}") from err
        first = _innermost(failed).rstrip(".")
        raise BadInputError(f"ONNX export failed with both exporters: torch.export: {first}; the TorchScript "
                            f"exporter: {_first_line(err)}") from err
    _check_dynamic(model, dynamic, "the TorchScript exporter")
    return ExportResult(model, "torchscript", _attribute(warns, module), fallback)


def _check_dynamic(model, dynamic: "DynamicAxes | None", exporter: str) -> None:
    """Every axis said dynamic is dynamic in the graph: an axis the model ties to a static size (a mask or a position
    table of the example's length) comes out fixed, and every sample of another size would be refused. Axes inferred
    from samples are not checked: those that come out fixed are no axes (`DynamicAxes.kept_in`)."""
    from cp_debug.export.dynamic import FROM_SAMPLES

    fixed = dynamic.static_in(model) if dynamic and dynamic.source != FROM_SAMPLES else []  # inferred: `kept_in`'s
    if fixed:
        raise BadInputError(f"{exporter} fixed the dynamic axes {', '.join(fixed)} at the example's size: the model "
                            "ties them to a static size; declare the axes they depend on dynamic too "
                            f"({dynamic.text()} …)")


class _TensorsOut:
    """A forward returning a dataclass, a ModelOutput or `None` entries (which neither exporter takes as it is)
    returns the tuple of its tensors while exported, in `sites.tensors_in` order, the order the output names
    follow; a tensor or a tuple/list of tensors is returned as it is. The module's own `forward` is wrapped on the
    instance, not the module in another: the ONNX scopes keep the module's names. No forward runs here."""

    def __init__(self, module):
        self.module = module
        self.saved = module.__dict__.get("forward")  # a forward set on the instance already, put back after

    def __enter__(self):
        import torch

        from cp_debug.sites import tensors_in

        forward = self.module.forward

        def tensors_only(*args, **kwargs):
            out = forward(*args, **kwargs)
            if isinstance(out, torch.Tensor) or (isinstance(out, (tuple, list))
                                                 and all(isinstance(t, torch.Tensor) for t in out)):
                return out
            return tuple(t for _, t in tensors_in(out))

        self.module.forward = tensors_only
        return self

    def __exit__(self, *exc):
        if self.saved is None:
            del self.module.forward
        else:
            self.module.forward = self.saved


def _run_export(module, example_inputs, input_names, output_names, dynamic_axes, *, opset, dynamo, dynamic=None):
    with _TensorsOut(module):
        return _run_export_as_is(module, example_inputs, input_names, output_names, dynamic_axes, opset=opset,
                                 dynamo=dynamo, dynamic=dynamic)


def _run_export_as_is(module, example_inputs, input_names, output_names, dynamic_axes, *, opset, dynamo,
                      dynamic=None):
    import torch

    small = weight_bytes(module) < onnx_files.INLINE_LIMIT  # else saved into the weights folder, never one proto
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kwargs = dict(input_names=list(input_names), output_names=list(output_names), opset_version=opset,
                      do_constant_folding=True)
        if dynamo:
            torchlib_ops_once()  # torchlib's op list read once a process (1.1 CPU s an export)
            # The dynamo exporter prints its progress; keep the user's terminal clean. Its graph is taken in memory
            # (`model_proto`, the bytes it would save): past 2 GiB a file would hold the weights outside and be
            # read back whole (13-18 s of a 2.2 GB model's export on the CPU machine).
            with _quiet():
                # the forward exported is `_TensorsOut`'s `(*args, **kwargs)`: the inputs' specs are its `args`'
                shapes = (dynamic.torch_shapes(input_names),) if dynamic else None
                program = torch.onnx.export(module, tuple(example_inputs), dynamo=True, dynamic_shapes=shapes,
                                            verbose=False, **kwargs)
            if small:
                model = program.model_proto
            else:
                model = _into_weights_folder(lambda path: program.save(str(path), external_data=True))
            del program
        elif small:
            with tempfile.TemporaryDirectory(prefix="cpdebug-export-") as tmp:
                path = os.path.join(tmp, "model.onnx")
                torch.onnx.export(module, tuple(example_inputs), path, dynamo=False, dynamic_axes=dynamic_axes,
                                  **kwargs)
                model = onnx.load(path)
        else:  # past 2 GiB torch writes model.onnx.data beside it
            model = _into_weights_folder(lambda path: torch.onnx.export(
                module, tuple(example_inputs), str(path), dynamo=False, dynamic_axes=dynamic_axes, **kwargs))
    return keep(fold_initializer_identities(model)), caught  # deduplicated weights: initializers again


def weight_bytes(module) -> int:
    """The bytes of a module's parameters and buffers."""
    return sum(t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers()))


def _into_weights_folder(save) -> "onnx.ModelProto":
    """The graph of a model past 2 GiB, `save(path)` writing it with its weights as external data straight into the
    process's weights folder, held from there (`onnx_read.read_onnx`): never one proto in memory. The graph's own
    file goes once read; its data file stays for the process."""
    path = new_file().with_suffix(".onnx")
    try:
        save(path)
        return read_onnx(path)
    finally:
        path.unlink(missing_ok=True)


class _quiet:
    """Silence stdout/stderr writes of the dynamo exporter (its progress lines), at the fd level too."""

    def __enter__(self):
        import contextlib

        self._stack = contextlib.ExitStack()
        self._stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
        self._stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
        return self

    def __exit__(self, *exc):
        self._stack.close()


def _attribute(caught, module) -> tuple[ExportWarning, ...]:
    spans = None  # read where a warning is attributed: most exports say none
    out = []
    for w in caught:
        cat = w.category.__name__
        if cat in _IGNORED_CATEGORIES:
            continue
        if spans is None:
            spans = _forward_spans(module)
        fname = os.path.abspath(w.filename)
        mods = tuple(q for q, (f, a, b) in spans.items() if f == fname and a <= w.lineno <= b)
        out.append(ExportWarning(cat, str(w.message), w.filename, w.lineno, mods))
    return tuple(out)


def _forward_spans(module) -> dict[str, tuple[str, int, int]]:
    """Each submodule's forward as (file, first line, last line); a class's source read once (a ResNet's fifty
    convolutions share Conv2d.forward)."""
    spans, of_class = {}, {}
    for q, m in module.named_modules():
        fwd = type(m).forward
        if fwd not in of_class:
            try:
                lines, start = inspect.getsourcelines(fwd)
                of_class[fwd] = (os.path.abspath(inspect.getsourcefile(fwd) or ""), start, start + len(lines) - 1)
            except (OSError, TypeError):
                of_class[fwd] = None
        if of_class[fwd] is not None:
            spans[q] = of_class[fwd]
    return spans


def _innermost(err: BaseException) -> str:
    """The first line of the error that caused `err` at the bottom of its chain (torch.onnx wraps its reason in
    "Failed to export the model with torch.export. This is step 1/3 …": the reason is its cause's, a data-dependent
    guard, an op without an ONNX function)."""
    seen = {id(err)}
    while err.__cause__ is not None and id(err.__cause__) not in seen:
        err = err.__cause__
        seen.add(id(err))
    return _first_line(err)


def _first_line(err: BaseException) -> str:
    text = plain(str(err)).strip().splitlines()  # torch.export colours its messages
    return f"{type(err).__name__}: {text[0] if text else ''}"[:300]
