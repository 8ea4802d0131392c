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

The files run as the runtime takes them: a file ONNX Runtime refuses as written is exit 3 with its line
(`refuse_unloadable`, after the interface check), never run through the CPU's float16 emulation that would load it;
weights an FP16 converter clamped are the model's weights, said with their numbers (`DeployedStages.warned`: on
stderr once, and in the notes).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from cp_debug.backends.spec import BackendSpec
from cp_debug.bisect.subjects.model_facts import RecipeFacts
from cp_debug.bisect.subjects.subject import Stage, Subject
from cp_debug.compare.noise import WEIGHT_ONLY_UNIT
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
    warned: tuple[str, ...] = ()  # of the notes, those said on stderr too: what a converter changed silently
    clamps: tuple[tuple, ...] = ()  # per stage: the weights its FP16 conversion clamped (`lint.weights.Clamp`)
    unit: float | None = None  # a weight-only precision's unit, measured from the files' own weights (`nbits.py`)

    def judged(self, spec: BackendSpec) -> tuple[str, float | None]:
        """(the precision `spec` over these files is judged at, its unit): a plain (fp32) spec the precision the files
        hold, a weight-only one with its unit measured from them — bisect's candidate and a sample sweep's alike."""
        at = self.precision if spec.precision == "fp32" else spec.precision
        return at, self.unit if at == self.precision else None

    @property
    def graph_differences(self) -> GraphDifferences:
        """Every stage's differences, stage after stage."""
        return sum(self.differences, GraphDifferences())

    def to_json(self) -> dict:
        """For the report's settings: per stage, the file and each probe's deployed tensor (and how it was found),
        why the others have none, and those of them the file computes inside a fused op (`inside_fused`: the op)."""
        out = {}
        for st, path, how in zip(self.stages, self.files, self.how):
            pm = st.probe_map()
            out[st.name] = {"file": str(path), "precision_held": file_precision(st.onnx()),
                            "mapped": {q: {"tensor": t, "by": how.get(q)} for q, t in pm.tensors.items()},
                            "unmapped": dict(pm.unmapped), **({"inside_fused": dict(pm.inside)} if pm.inside else {})}
        return out


def stage_file(spec: BackendSpec, subject: Subject, stage: Stage) -> Path:
    """The user's file for `stage` (`data/model_folder.py`: a manifest's name, `DIR/<stage>.onnx` or Autoware's and
    autoware-ml's `DIR/<stage>_<model>.onnx`, e.g. `pts_voxel_encoder_centerpoint.onnx`); a one-stage subject also
    takes DIR's only .onnx file, or the file given itself (`SPEC@FILE.onnx`)."""
    from cp_debug.data.model_folder import expected_names

    assert spec.onnx_dir is not None
    if spec.onnx_dir.is_file():  # SPEC@FILE.onnx
        if len(subject.stages) == 1:
            return spec.onnx_dir
        raise BadInputError(f"{spec}: one file for a model of {len(subject.stages)} stages: give the folder holding "
                            f"{expected_names([s.name for s in subject.stages])}")
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
    from cp_debug.graph.model import load_onnx, named_nodes
    from cp_debug.lint.weights import check_weights
    from cp_debug.probes.foreign import map_foreign
    from cp_debug.probes.fused_parts import with_views
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
    # first, before anything is exported or run: do the files hold the model's weights?
    per_stage = [check_weights(st.module, m, p) if st.module is not None else None
                 for st, m, p in zip(subject.stages, models, shown)]
    checks = [c for c in per_stage if c is not None]
    weight_notes = _weights_verdict(spec, subject, checks)
    clamped = [f"{spec}: {c.file}: {k.line()}" for c in checks for k in c.clamps]
    for i, (st, path, model, name) in enumerate(zip(subject.stages, paths, models, shown)):
        model = _as_prefill(model, path, st, subject, notes, f"{spec}: {name}")
        # a cure names the file's nodes (left out of its quantization): unnamed ones by their first output, as the
        # reference's are (an onnx.helper graph quantized by quantize_static keeps them unnamed)
        model, unnamed = named_nodes(model, name)
        notes += [f"{spec}: {line}" for line in unnamed]
        model, renames = adopt_output_names(model, st.onnx())  # the file's own output names, read as ours
        if renames:
            notes.append(f"{spec}: {name}: input / output(s) read by order under the model's names: "
                         + ", ".join(f"{d!r} as {o!r}" for d, o in renames.items()))
        check_interface(model, st.onnx(), f"{spec.framework}@{path}")  # a mix-up of the user's first (exit 2)
        if path not in paths[:i]:  # then the file as the runtime takes it (exit 3), before anything runs it
            refuse_unloadable(spec, [path], reference=st.onnx())
        # the file's shapes at a non-square input beside the module's (the interface is ours: checked above)
        sized = (sized_shapes(model, st.module, st.example_inputs, st.input_names, code_key=st.code_key)
                 if st.module is not None else None)
        found = map_foreign(model, st.onnx(), st.probe_map(), st.trace(), st.name, st.foreign_names, sized=sized)
        model = with_dequantized(model, found.views)  # a QOperator file's integer-only tensors the probes read
        model = with_views(model, found.fused)  # a fused projection's parts (q of qkv_proj) the probes read
        files.append(path)
        how.append(dict(found.how))
        differences.append(found.differences)
        views.append(replace(st, onnx_model=model, export=None, qdq_export=None, _qdq=None, _trace=st.trace(),
                             _map=found.probe_map, export_warnings=(), export_note=None))
        wanted = [p for p in level_probes.get(i, []) if p in st.probe_map().tensors]
        inside = [p for p in wanted if p in found.probe_map.inside]  # computed inside a fused op: counted apart
        lost = [p for p in wanted if p not in found.probe_map.tensors and p not in inside]
        ways = ", ".join(f"{n} by {way}" for way, n in found.counts().items() if n) or "none"
        note = (f"{spec}: {name}: {len(wanted) - len(lost) - len(inside)} of {len(wanted) - len(inside)} probes "
                f"mapped onto the deployed graph (of all modules: {ways})")
        if inside:
            ops = sorted({found.probe_map.inside[p].split(" ", 1)[0] for p in inside})
            note += (f"; {len(inside)} more inside its fused ops ({', '.join(ops)}), no tensor of theirs to compare: "
                     f"{', '.join(inside[:6])}{' …' if len(inside) > 6 else ''}")
        if lost:
            note += f"; not mapped: {', '.join(lost[:6])}{' …' if len(lost) > 6 else ''} (reported missing)"
        notes.append(note)
        if found.differences:
            notes.append(f"{spec}: {name}: graph differences: {found.differences.summary()}")
    notes[:0] = clamped + weight_notes
    if subject.deployed_split is not None and spec.is_tensorrt:
        notes.append(f"{spec}: TensorRT builds each stage's engine from {paths[0].name} cut in two; an engine of the "
                     "whole graph in the folder is not what runs")
    precision = _held_precision(held)
    if precision != "fp32":
        how_run = ("they run as they are" if asked.precision in ("fp32", precision)
                   else f"converted to {spec.precision} as asked")
        notes.append(f"{spec}: the deployed files hold {precision} "
                     f"({', '.join(f'{st.name}: {p}' for st, p in zip(views, held))}); {how_run}")
    clamps = tuple(c.clamps if c is not None else () for c in per_stage)
    unit = _weight_unit(precision, models, held, notes, str(spec))
    return DeployedStages(tuple(views), tuple(notes), precision, tuple(files), tuple(how), tuple(differences), spec,
                          tuple(clamped), clamps, unit)


def _as_prefill(model, path: Path, stage: Stage, subject: Subject, notes: list[str], label: str):
    """A decoder LLM file (ONNX Runtime GenAI's builder: input_ids, mask, positions, KV cache) deployed for a model
    that takes input_ids alone (a `--torch` causal LM): the file fixed to the subject's prefill, the inputs cp_debug
    makes held as constants (`decoder_feed.prefilled`), its cache outputs left inside, its scope names read as the HF
    model's (`decoder_feed.builder_scope`, where genai_config.json is beside it); any other file as it is."""
    from cp_debug.bisect.subjects.decoder_feed import IDS, DecoderInputs, builder_scopes, prefilled

    if subject.inputs.get(IDS) is None:
        return model
    ours = {i.name for i in stage.onnx().graph.input}
    if IDS not in ours:
        return model
    dec = DecoderInputs.of(model, path)
    if dec is None or not ours <= set(dec.names):
        return model
    length = int(subject.inputs[IDS].shape[-1])
    fixed = prefilled(model, dec, length, ours, [o.name for o in stage.onnx().graph.output])
    if fixed is None:
        return model
    if stage.foreign_names is None:  # ONNX Runtime GenAI's builder's scope names read as the HF model's
        stage.foreign_names = builder_scopes(path, frozenset(stage.trace().call_counts))
    made = [n for n in dec.names if n not in ours]
    notes.append(f"{label}: a decoder file: its {', '.join(made[:3])}{' …' if len(made) > 3 else ''} made by "
                 f"cp_debug for the {length}-token prefill (mask ones, positions 0…{length - 1}, the cache empty)")
    return fixed


def _weight_unit(precision: str, models: list, held: list[str], notes: list[str], label: str) -> float | None:
    """A weight-only precision's unit: the largest of its files' weights' own rounding (`precision/nbits.py`)."""
    from cp_debug.precision.nbits import weight_unit
    from cp_debug.precision.qmoe import qmoe_unread

    if precision not in WEIGHT_ONLY_UNIT:
        return None
    units = [u for m, p in zip(models, held) if p == precision and (u := weight_unit(m)) is not None]
    if not units:
        return None
    ops = {n.op_type for m in models for n in m.graph.node}
    held_by = ("MatMulNBits" if "MatMulNBits" in ops else "4-bit DequantizeLinear") + \
        (" and QMoE experts'" if "QMoE" in ops else "")  # a mixture of experts' 4-bit experts read too (s14)
    notes.append(f"{label}: {precision}: its {held_by} weights round by {max(units):.3g} of their RMS (step²/12 "
                 "per element, INT8 activations' 0.0055 added at accuracy_level 4): the unit of its budget")
    unread = [n for m in models for n in qmoe_unread(m)]
    if unread:  # said where the experts are not read, not passed over
        notes.append(f"{label}: the experts of {', '.join(unread[:3])}{' …' if len(unread) > 3 else ''} not read "
                     "(not the packed layout onnxruntime's QMoE documents): the unit is the rest's")
    return max(units)


def refuse_unloadable(spec: BackendSpec, paths: list[Path], label: str | None = None, reference=None) -> None:
    """A deployed file ONNX Runtime will not load as it is written stops the run (exit 3) with ONNX Runtime's own
    line (`backends/ort/ort_load.py`: a plain session from the file's path, CPU provider, no optimisation), before
    anything is mapped or run: cp_debug never runs a repaired copy in its place (on the CPU, the float32-widened
    twin with float16 storage emulated, `ort_runner.half_mode`, loads where the file itself does not). `reference`:
    the FP32 graph a float16 converter's cure is run on before the line says it (`ort_load.load_refusal`)."""
    from cp_debug.backends.spec import Capability

    if not spec.can(Capability.ORT_SESSIONS):
        return
    from cp_debug.backends.ort.ort_load import load_refusal
    from cp_debug.errors import BackendRuntimeError

    for path in paths:
        refusal = load_refusal(path, Path(path).name, device=spec.device, reference=reference)
        if refusal is not None:
            raise BackendRuntimeError(refusal.line(label or str(spec)))


def refuse_unloadable_given(path: str | Path, specs) -> None:
    """`--onnx FILE` run as it is by an ONNX Runtime backend of `specs` (the reference, or a candidate that runs the
    file's own precision): a file ONNX Runtime refuses as written is one line, exit 3, before anything else is done
    with it — never run through an emulation that would load it."""
    from cp_debug.backends.spec import Capability

    ort = next((s for s in specs if s.onnx_dir is None and s.can(Capability.ORT_SESSIONS)), None)
    if ort is not None:
        refuse_unloadable(ort, [Path(path)], label=f"{ort} (--onnx)")


def _held_precision(held: list[str]) -> str:
    """The files' precision, the lowest any of them holds."""
    return next((p for p in ("nvfp4", "fp8", "mxfp8", "int8", *WEIGHT_ONLY_UNIT, "fp16") if p in held), "fp32")


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
