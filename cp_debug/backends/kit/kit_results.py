"""What the target computed from a kit, read back for `trt-*@KIT`: per stage and precision, per frame, the ONNX
tensors it holds, why the others are absent, and what the files say about the engine (notes for the precision report).

Two sources, as the kit's scripts leave them (layout: `kit_files.py`):
- `results/<precision>/trtexec/<frame>/<stage>/` (`run_trtexec.sh`): trtexec's numpy debug-tensor dumps, the engine's
  layer information (`--exportLayerInfo`), its outputs (`--exportOutput`) and its log, read by `trt_dumps_*.py`;
- `results/<precision>/polygraphy/<stage>.json` (`run_polygraphy.sh`): a polygraphy RunResults, frames as iterations.
Where a kit holds both, trtexec's are read (the engine as trtexec built it, with its layer information: which tensors
TensorRT fused away, which precision each layer ran) and the precision report says the polygraphy file was left aside.

Everything is checked before a run (`kit_files.check_ran`: the target ran this kit's ONNX files on its inputs; every
file complete, every output shaped as the reference's); a debug dump is loaded only when a probe asks for it.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Mapping

from cp_debug.backends.kit import kit_files as kf
from cp_debug.errors import BadInputError
from cp_debug.files import tree_stamp

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from cp_debug.backends.trt.trt_dumps_numpy import DebugDumps

_RESULTS: dict[tuple, "TargetResults"] = {}
_SHOWN = 4  # tensor names listed in a note before "… (N in all)"
_FLOAT_TYPES = {1, 10, 16, 11, 17, 18, 19, 20, 23}  # ONNX float, float16, bfloat16, double, float8s, float4


class TargetResults:
    """What the target computed for one stage and precision. `frames`: frame id -> {ONNX tensor: array} (a dump is
    read when asked); `absent`: frame id -> {tensor: why it has no value}; `default_absent`: why for any other
    tensor; `notes`: for the precision report; `runner_name`: who computed it (polygraphy's runner, or trtexec)."""

    def __init__(self, runner_name: str, frames: Mapping[str, Mapping[str, "np.ndarray"]], source: Path, *,
                 absent: Mapping[str, Mapping[str, str]] | None = None, default_absent: str = "",
                 notes: tuple[str, ...] = ()):
        self.runner_name = runner_name
        self.frames = frames
        self.source = source
        self.absent = absent or {}
        self.default_absent = default_absent
        self.notes = notes

    @property
    def stood_in(self) -> bool:
        """ONNX Runtime ran in TensorRT's place (`run_polygraphy.sh --onnxrt`)."""
        return self.runner_name.startswith("onnxrt")

    def why_absent(self, frame: str, name: str) -> str:
        return self.absent.get(frame, {}).get(name, self.default_absent)


def target_results(kit: kf.Kit, precision: str, stage: kf.KitStage) -> TargetResults:
    """The target's results of `stage` at `precision`, checked against the kit (hashes of what it ran, one result
    per frame, each output's shape as the reference's): trtexec's folder where the kit holds one, else polygraphy's
    file; read once per process while its files stay as they were (a long-lived process — `cpdebug serve`, a
    notebook — reads results copied back again)."""
    results = (kit.folder / kf.trtexec_folder(precision)).parent  # trtexec's and polygraphy's results alike
    key = (str(kit.folder.resolve()), precision, stage.name, tree_stamp(results))
    if key in _RESULTS:
        return _RESULTS[key]
    kf.check_ran(kit, precision)
    trtexec = kit.folder / kf.trtexec_folder(precision)
    found = _trtexec(kit, precision, stage) if trtexec.is_dir() else _polygraphy(kit, precision, stage)
    for fr in kit.manifest.frames:
        got = found.frames[fr.id]
        for t in stage.outputs:
            shape = tuple(got[t.name].shape) if t.name in got else None
            if shape != t.shapes[fr.id]:
                raise BadInputError(f"{found.source}: output {t.name!r} of {fr.id} is {shape}, the kit's reference "
                                    f"is {t.shapes[fr.id]}: these are not this kit's results")
    _RESULTS[key] = found
    return found


def _polygraphy(kit: kf.Kit, precision: str, stage: kf.KitStage) -> TargetResults:
    from cp_debug.backends.trt.trt_dumps_layer_info import FUSED
    from cp_debug.backends.trt.trt_dumps_polygraphy import read_polygraphy_results

    path = kit.folder / kf.polygraphy_results(precision, stage.name)
    runs = read_polygraphy_results(path)
    if len(runs) != 1:
        raise BadInputError(f"{path} holds {len(runs)} runners' results; the kit's script writes one")
    name, iterations = runs[0]
    frames = kit.manifest.frames
    if len(iterations) != len(frames):
        raise BadInputError(f"{path} holds {len(iterations)} iteration(s) for the kit's {len(frames)} frame(s): it "
                            "is not this kit's run; run the kit's script again")
    notes: tuple[str, ...] = ()
    outputs = {t.name for t in stage.outputs}
    if name.startswith("onnxrt"):
        why = "not in the target's results (polygraphy --onnxrt did not save it)"
    elif any(set(it) - outputs for it in iterations):
        why = FUSED  # debug tensors came back: a tensor without one was fused away
    else:  # polygraphy's TrtRunner turns on no unfused debug tensor (0.49.26 ... 0.53.6): the outputs alone
        why = (f"not in the target's results (polygraphy --trt hands back the engine's outputs only; "
               f"{kf.TRTEXEC_SCRIPT} saves per-layer values)")
        notes = (f"{path.name} holds the engine's outputs only: polygraphy's TrtRunner turns on no unfused debug "
                 f"tensor; run {kf.TRTEXEC_SCRIPT} on the target for per-layer values",)
    return TargetResults(name, {fr.id: it for fr, it in zip(frames, iterations)}, path, default_absent=why,
                         notes=notes)


class _Dumped(Mapping):
    """One frame's values from a trtexec results folder: the debug dumps (loaded when read), and the engine's
    outputs from the dump where there is one (exact) or from `--exportOutput` (six significant digits)."""

    def __init__(self, dumps: "DebugDumps | None", exported: dict[str, "np.ndarray"]):
        self.dumps, self.exported = dumps, exported

    def __getitem__(self, name: str) -> "np.ndarray":
        if self.dumps is not None and name in self.dumps.files:
            return self.dumps.load(name)
        return self.exported[name]

    def __contains__(self, name: object) -> bool:
        return (self.dumps is not None and name in self.dumps.files) or name in self.exported

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys([*(self.dumps.files if self.dumps is not None else ()), *self.exported]))

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _shown(names) -> str:
    names = list(names)
    return ", ".join(names[:_SHOWN]) + (f" … ({len(names)} in all)" if len(names) > _SHOWN else "")


def _trtexec(kit: kf.Kit, precision: str, stage: kf.KitStage) -> TargetResults:
    """`run_trtexec.sh`'s folders of `stage`, one per frame: every file read and checked now (a dump's header and
    length, the layer information, the outputs), the dumps' values when a probe asks."""
    from cp_debug.graph.model import load_onnx
    from cp_debug.graph.plan import tensor_types

    m = kit.manifest
    onnx_file = kit.folder / kf.onnx_path(precision, stage.name, m.held_precision)
    model = load_onnx(onnx_file, check=False)
    names = [t for n in model.graph.node for t in n.output if t]
    types = tensor_types(model)  # values are the floating-point tensors; shape arithmetic is no layer's output
    values = [n for n in names if types.get(n) is not None and types[n].tensor_type.elem_type in _FLOAT_TYPES]
    frames: dict[str, _Dumped] = {}
    absent: dict[str, dict[str, str]] = {}
    read = []
    for fr in m.frames:
        folder = kit.folder / kf.trtexec_results(precision, fr.id, stage.name)
        if not folder.is_dir():
            raise BadInputError(f"{folder} is missing: {kf.TRTEXEC_SCRIPT} did not run {stage.name} on {fr.id}, or "
                                "results/ was copied back in part; run the script again and copy results/ whole")
        frames[fr.id], absent[fr.id], layers, dumps, seen = _trtexec_frame(folder, names, values, stage)
        read.append((folder, layers, dumps, seen))
    notes = _trtexec_notes(model, onnx_file.name, stage, *read[0])
    poly = kit.folder / kf.polygraphy_results(precision, stage.name)
    if poly.exists():
        notes.append(f"{poly} is also here and was not read: trtexec's results are ({kf.trtexec_folder(precision)})")
    return TargetResults("trtexec", frames, kit.folder / kf.trtexec_folder(precision), absent=absent,
                         default_absent="not in the target's dumps", notes=tuple(notes))


def _trtexec_frame(folder: Path, names: list[str], values: list[str], stage: kf.KitStage):
    """One frame/stage folder: its values, why each tensor of `values` without a dump has none, and what was read
    (dump files resolved against every tensor name of the graph, `names`)."""
    from cp_debug.backends.trt.trt_dumps_layer_info import read_layer_info, unobservable
    from cp_debug.backends.trt.trt_dumps_numpy import read_debug_dumps
    from cp_debug.backends.trt.trt_dumps_outputs import read_trtexec_outputs

    layers = read_layer_info(folder / kf.TRTEXEC_LAYERS)
    exported = read_trtexec_outputs(folder / kf.TRTEXEC_OUTPUTS)
    outputs = {t.name: exported[t.name] for t in stage.outputs if t.name in exported}
    if not any(folder.glob("[0-9][0-9][0-9][0-9]*_*.npy")):  # TensorRT < 10.12: the script saved the outputs only
        why = "no debug tensors: TensorRT before 10.12 dumps none (the engine's outputs only)"
        return _Dumped(None, outputs), dict.fromkeys(values, why), layers, None, None
    dumps = read_debug_dumps(folder, names)
    seen = unobservable(values, dumps, layers)
    absent = {n: seen.reason(n) for n in values if seen.reason(n) is not None}
    for file, owners in dumps.ambiguous.items():
        for n in owners:
            absent[n] = f"{seen.reason(n)}: {file}"
    return _Dumped(dumps, outputs), absent, layers, dumps, seen


def _trtexec_notes(model, onnx_name: str, stage: kf.KitStage, folder: Path, layers, dumps, seen) -> list[str]:
    """What the first frame's folder says about the engine: the precision each layer ran, the layers run in
    another precision than the ONNX gives, the tensors fused away or missing, files not read."""
    from cp_debug.backends.trt.trt_dumps_layer_info import FUSED, precision_mismatches
    from cp_debug.backends.trt.trt_dumps_numpy import SUMMARY_FILE

    notes = [_ran_note(layers)]
    if layers.detailed:
        notes.extend(mm.message for mm in precision_mismatches(layers, model))
    if seen is None:
        return [*notes, "no debug tensors in the dump folders (TensorRT before 10.12): only the engine's outputs are "
                        "compared"]
    if seen.fused:
        notes.append(f"{len(seen.fused)} tensor(s) {FUSED}: {_shown(seen.fused)}")
    if seen.missing:
        notes.append(f"{len(seen.missing)} tensor(s) an engine layer writes are missing from the dump folder "
                     f"(a truncated copy?): {_shown(seen.missing)}")
    if dumps.ambiguous:
        notes.append(f"dump files several ONNX tensors' names give (not read: trtexec wrote no {SUMMARY_FILE}): "
                     + "; ".join(f"{f} ({', '.join(o)})" for f, o in list(dumps.ambiguous.items())[:_SHOWN]))
    if dumps.unknown:
        notes.append(f"{len(dumps.unknown)} dump file(s) name no tensor of {onnx_name} (TensorRT's own tensors): "
                     f"{_shown(dumps.unknown)}")
    if dumps.runs > 1:
        notes.append(f"{folder} holds {dumps.runs} inferences; the first is read (the script runs one)")
    outs = [t.name for t in stage.outputs if t.name not in dumps.files]
    if outs:
        notes.append(f"output(s) {_shown(outs)} read from {kf.TRTEXEC_OUTPUTS} (trtexec prints six significant "
                     "digits): no debug dump of them")
    return notes


def _ran_note(layers) -> str:
    """The precisions TensorRT ran the engine's layers in, counted (from `--exportLayerInfo`)."""
    if not layers.detailed:
        return (f"{layers.path} holds layer names only (built without --profilingVerbosity=detailed): the precision "
                "each layer ran is unknown")
    counts = Counter((la.precision or "no precision given").upper() for la in layers.layers)
    ran = ", ".join(f"{n} {p}" for p, n in counts.most_common())
    return f"TensorRT ran the engine's {len(layers.layers)} layers in: {ran} ({layers.path.name})"
