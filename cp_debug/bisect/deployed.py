"""A `SPEC@DIR` candidate's stages: the user's own deployed ONNX files in place of cp_debug's export.

Each stage of the subject gets a view that keeps its PyTorch module, trace and probe names but whose graph is the
user's file (`DIR/<stage name>.onnx`: `pts_voxel_encoder.onnx`, `pts_backbone_neck_head.onnx` as AWML names them,
or Autoware's `pts_voxel_encoder_<model>.onnx` and a manifest: `data/model_folder.py`; a subject deployed as one
graph cuts it into its stages' graphs itself, `Subject.deployed_split`: TransFusion-L's `transfusion.onnx`)
and whose probe map is the file's tensors found by `probes/foreign.py` (scope names, else structure). The file's
interface is checked against the model's stage first (`probes/interface.py`: one line, exit 2). The reference keeps
the subject's own stages (torch or cp_debug's export), so the two are compared probe by probe; a probe the file
does not map is reported missing with the reason, never compared with a tensor that does not correspond. The nodes
of either graph with no counterpart in the other (`probes/graph_diff.py`) are listed per stage, for the report and
for the verdict (`graph_blame.py`).

The files keep their own precision and output names: an FP16 file (onnxconverter-common's, diffusers', Olive's) makes
`ort@DIR` the `ort-cpu-fp16@DIR` candidate it is (`held_spec`, never converted again), a Q/DQ file runs as given and
is judged at int8 (or fp8), `*-int8@DIR` over it is one line (never quantized again), and outputs named by the
user's exporter are read by order under the model's names (`probes/interface.adopt_output_names`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from cp_debug.backends.spec import BackendSpec
from cp_debug.bisect.model_facts import RecipeFacts
from cp_debug.bisect.subject import Stage, Subject
from cp_debug.data.model_folder import stage_file as deployed_file
from cp_debug.errors import BadInputError
from cp_debug.precision.held import file_precision
from cp_debug.probes.graph_diff import GraphDifferences


@dataclass(frozen=True)
class DeployedStages:
    """The candidate's stage views (in subject order), what mapping them found (for the report's warnings), and
    the precision the files hold themselves (`file_precision`: what the candidate's tolerance follows)."""

    stages: tuple[Stage, ...]
    notes: tuple[str, ...]
    precision: str = "fp32"
    files: tuple[Path, ...] = ()
    how: tuple[dict[str, str], ...] = ()  # per stage: probe -> "scope" | "structure"
    differences: tuple[GraphDifferences, ...] = ()  # per stage: the nodes with no counterpart on the other side
    spec: BackendSpec | None = None  # the candidate as it runs: a plain spec takes the precision its files hold

    @property
    def graph_differences(self) -> GraphDifferences:
        """Every stage's differences, stage after stage."""
        return sum(self.differences, GraphDifferences())

    def to_json(self) -> dict:
        """For the report's settings: per stage, the file and each probe's deployed tensor (and how it was found),
        and why the others have none."""
        out = {}
        for st, path, how in zip(self.stages, self.files, self.how):
            pm = st.probe_map()
            out[st.name] = {"file": str(path), "precision_held": file_precision(st.onnx()),
                            "mapped": {q: {"tensor": t, "by": how.get(q)} for q, t in pm.tensors.items()},
                            "unmapped": dict(pm.unmapped)}
        return out


def stage_file(spec: BackendSpec, subject: Subject, stage: Stage) -> Path:
    """The user's file for `stage` (`data/model_folder.py`: a manifest's name, `DIR/<stage>.onnx` or Autoware's and
    autoware-ml's `DIR/<stage>_<model>.onnx`, e.g. `pts_voxel_encoder_centerpoint.onnx`); a one-stage subject also
    takes DIR's only .onnx file."""
    from cp_debug.data.model_folder import expected_names

    assert spec.onnx_dir is not None
    path = deployed_file(spec.onnx_dir, stage.name, what=str(spec))
    if path is not None:
        return path
    found = sorted(spec.onnx_dir.glob("*.onnx"))
    if len(subject.stages) == 1 and len(found) == 1:
        return found[0]
    wanted = expected_names([s.name for s in subject.stages])
    raise BadInputError(f"{spec}: {spec.onnx_dir / (stage.name + '.onnx')} is missing ({spec.onnx_dir} must hold "
                        f"{wanted}, as the deployment exporter or Autoware's model folders name them)")


def deployed_stages(spec: BackendSpec, subject: Subject, level_probes: dict[int, list[str]]) -> DeployedStages:
    """Load, check and map the user's files for every stage of `subject` (stages already exported and mapped).
    `level_probes` (stage → the run's probes) picks which unmapped probes the notes name."""
    from cp_debug.graph.model import load_onnx
    from cp_debug.lint.weights import check_weights
    from cp_debug.probes.foreign import map_foreign
    from cp_debug.probes.quantized_forms import with_dequantized
    from cp_debug.probes.sized_shapes import sized_shapes
    from cp_debug.probes.interface import adopt_output_names, check_interface

    views, notes, files, how, differences = [], [], [], [], []
    if subject.deployed_split is not None:  # one deployed graph, cut at the stages' interfaces (TransFusion-L)
        one, models = subject.deployed_split(spec.onnx_dir, str(spec))
        paths, shown = [one] * len(models), [f"{one.name} ({st.name})" for st in subject.stages]
    else:
        paths = [stage_file(spec, subject, st) for st in subject.stages]
        models, shown = [load_onnx(path) for path in paths], [path.name for path in paths]
    held = [file_precision(model) for model in models]
    _not_quantized_again(spec, paths, models, held)
    asked, spec = spec, held_spec(spec, held)
    refused = _refused_as_is(spec, models, shown, held)  # a float16 file the runtime itself will not load
    # first, before anything is exported or run: do the files hold the model's weights?
    weight_notes = _weights_verdict(spec, subject, [check_weights(st.module, m, p) for st, m, p
                                                    in zip(subject.stages, models, shown) if st.module is not None])
    for i, (st, path, model, name) in enumerate(zip(subject.stages, paths, models, shown)):
        model, renames = adopt_output_names(model, st.onnx())  # the file's own output names, read as ours
        if renames:
            notes.append(f"{spec}: {name}: input / output(s) read by order under the model's names: "
                         + ", ".join(f"{d!r} as {o!r}" for d, o in renames.items()))
        check_interface(model, st.onnx(), f"{spec.framework}@{path}")
        # the file's shapes at a non-square input beside the module's (the interface is ours: checked above)
        sized = (sized_shapes(model, st.module, st.example_inputs, st.input_names, code_key=st.code_key)
                 if st.module is not None else None)
        found = map_foreign(model, st.onnx(), st.probe_map(), st.trace(), st.name, st.foreign_names, sized=sized)
        model = with_dequantized(model, found.views)  # a QOperator file's integer-only tensors the probes read
        files.append(path)
        how.append(dict(found.how))
        differences.append(found.differences)
        views.append(replace(st, onnx_model=model, export=None, qdq_export=None, _qdq=None, _trace=st.trace(),
                             _map=found.probe_map, export_warnings=(), export_note=None))
        wanted = [p for p in level_probes.get(i, []) if p in st.probe_map().tensors]
        lost = [p for p in wanted if p not in found.probe_map.tensors]
        ways = ", ".join(f"{n} by {way}" for way, n in found.counts().items() if n) or "none"
        note = (f"{spec}: {name}: {len(wanted) - len(lost)} of {len(wanted)} probes mapped onto the deployed "
                f"graph (of all modules: {ways})")
        if lost:
            note += f"; not mapped: {', '.join(lost[:6])}{' …' if len(lost) > 6 else ''} (reported missing)"
        notes.append(note)
        if found.differences:
            notes.append(f"{spec}: {name}: graph differences: {found.differences.summary()}")
    notes[:0] = weight_notes + refused
    if subject.deployed_split is not None and spec.is_tensorrt:
        notes.append(f"{spec}: TensorRT builds each stage's engine from {paths[0].name} cut in two; an engine of the "
                     "whole graph in the folder is not what runs")
    precision = _held_precision(held)
    if precision != "fp32":
        how_run = ("they run as they are" if asked.precision in ("fp32", precision)
                   else f"converted to {spec.precision} as asked")
        notes.append(f"{spec}: the deployed files hold {precision} "
                     f"({', '.join(f'{st.name}: {p}' for st, p in zip(views, held))}); {how_run}")
    return DeployedStages(tuple(views), tuple(notes), precision, tuple(files), tuple(how), tuple(differences), spec)


# a user's float16 file is tried in a plain session up to this size (its bytes serialised once more)
_LOAD_CHECK_UP_TO = 256 << 20


def _refused_as_is(spec: BackendSpec, models: list, shown: list[str], held: list[str]) -> list[str]:
    """On the CPU's emulated float16 storage (`ort_runner.half_mode`), cp_debug runs a float16 file's float32-widened
    twin, which loads where the file itself may not: onnxconverter-common's `keep_io_types` output leaves a Cast's
    value_info float while the Cast writes float16, and ONNX Runtime refuses the file ("Type Error …"), on CUDA as in
    its own CPU float16. Each such file is tried in a plain session (no optimisation, up to `_LOAD_CHECK_UP_TO`
    bytes of weights, as `onnx_files.encoded` encodes it); a refusal is said beside the run, with ONNX Runtime's
    first line."""
    from cp_debug.backends.ort_runner import half_mode

    if spec.framework != "ort" or spec.device != "cpu" or half_mode() != "emulated":
        return []
    import onnxruntime as ort

    from cp_debug.graph.onnx_files import encoded, model_nbytes

    out = []
    for model, name, precision in zip(models, shown, held):
        # its weights' bytes first: a file past 2 GiB (external data) is neither encoded nor tried
        data = encoded(model) if precision == "fp16" and model_nbytes(model) <= _LOAD_CHECK_UP_TO else None
        if data is None:
            continue
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        try:
            ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
        except Exception as err:  # noqa: BLE001 - what ONNX Runtime says of the file is the finding
            said = (str(err).strip().splitlines() or ["(no message)"])[0][:300]
            out.append(f"{spec}: {name}: ONNX Runtime {ort.__version__} refuses this file as it is ({said}): cp_debug "
                       "ran its float32-widened twin with float16 storage emulated, which your runtime cannot load — "
                       "on CUDA, or with CPDEBUG_ORT_CPU_HALF=native, this is the error")
    return out


def _held_precision(held: list[str]) -> str:
    """The files' precision, the lowest any of them holds."""
    return next((p for p in ("nvfp4", "fp8", "mxfp8", "int8", "fp16") if p in held), "fp32")


def held_spec(spec: BackendSpec, held: list[str]) -> BackendSpec:
    """`ort@DIR` / `trt@DIR` over FP16 files runs as `*-fp16@DIR`: the file holds its precision and runs as it is
    (the graph loader does not convert a float16 file again), so the candidate is shown, judged and explained
    (segment_why.py) as the FP16 run it is, never as `ort-cpu-fp32`. Q/DQ files keep the spec (their INT8 is run as
    given, judged at `DeployedStages.precision`)."""
    if spec.precision == "fp32" and _held_precision(held) == "fp16":
        return replace(spec, precision="fp16")
    return spec


def _not_quantized_again(spec: BackendSpec, paths: list[Path], models: list, held: list[str]) -> None:
    """`*-int8@DIR` / `*-fp8@DIR` over files that hold Q/DQ already: quantizing a quantized graph again is no
    deployment (ONNX Runtime's quantizer meets a cycle in it), so it is one line, exit 2, before anything runs."""
    if not spec.calibrated:
        return
    from cp_debug.precision.held import qdq_count

    for path, model, p in zip(paths, models, held):
        if p in ("int8", "fp8"):
            device = "" if spec.is_tensorrt or spec.device == "cpu" else f"-{spec.device}"
            plain = f"{spec.framework}{device}@{spec.onnx_dir}"
            raise BadInputError(f"{path} is already quantized ({qdq_count(model)} QuantizeLinear/DequantizeLinear "
                                f"nodes): give it as {plain} (it runs as it is, judged at {p}); cp_debug never "
                                "quantizes a quantized file again")


def _weights_verdict(spec: BackendSpec, subject: Subject, checks: list) -> list[str]:
    """Said first, before any stage runs: files exported from other weights than the model's make every probe
    "diverge" with a meaningless root cause, so that is one line and exit 2 (`lint/weights.py` compares them);
    a few differing weights (an edited file) are a note."""
    if not checks:
        return []
    from cp_debug.lint.weights import exported_elsewhere

    compared = sum(c.compared for c in checks)
    differ = sum(c.differ for c in checks)
    if exported_elsewhere(checks):
        facts = subject.facts if isinstance(subject.facts, RecipeFacts) else None
        weights = (facts.weights if facts else None) or "the model's weights"
        if not (facts and facts.checkpoint) and "random" in str(weights):
            weights = f"{weights}: no --checkpoint was given"
        examples = [e for c in checks for e in c.examples][:2]
        eg = f", e.g. {', '.join(examples)}" if examples else ""
        raise BadInputError(f"{spec}: the pair in {spec.onnx_dir} was not exported from these weights ({weights}): "
                            f"{differ} of {compared} weights differ{eg}; pass the checkpoint it was exported from "
                            "with --checkpoint")
    if not differ and not any(c.skipped for c in checks):
        return []
    return [f"{spec}: weights checked against the model's: " + "; ".join(c.line() for c in checks)]
