"""Any one-graph model's kit (`cpdebug trt-kit --torch FILE.py:FUNC | --onnx FILE [--inputs A.npz …]`, issue 110):
what goes in a kit of a model no recipe knows, beside CenterPoint's pair and TransFusion-L's one graph.

- The graph: `--onnx`'s file as given (its bytes; a file keeping its weights outside, as onnx's external data, is
  written again with them in `<stage>.onnx.data` beside it), or `--torch`'s export by the exporter bisect uses (the
  export cache: `bisect --torch` on the kit's samples exports the same graph, so the target's tensors carry its
  names). Past 2 GiB of weights the graph keeps them in `<stage>.onnx.data` (`graph/onnx_files.save_onnx`).
- The frames are samples: each `--inputs` .npz (or a folder of them, one sample a file), read and cast as
  `bisect --inputs` reads them (`samples/sets.load_samples`); none given: `--torch`'s example inputs, or seeded
  random inputs of an `--onnx` file of fixed shapes. Each sample's inputs go in as trtexec / polygraphy read them
  and as one .npz (`inputs/<frame>/<stage>.npz`), which `bisect --inputs` reads back.
- The reference: the module in PyTorch (`--torch`), else ONNX Runtime FP32 on the CPU (`--onnx`), as bisect's.
- The profile (trtexec's `--minShapes/--optShapes/--maxShapes`, polygraphy's `--trt-*-shapes`): per input, the range
  given (`--min-shapes` / `--opt-shapes` / `--max-shapes` in trtexec's spelling), else min/max over the samples and
  opt the largest (`backends/trt/trt_profile.py`); each given range is checked against the graph's fixed axes and
  every sample must lie within it.
- Read back as CenterPoint's kit is: `bisect --torch FILE.py:FUNC --inputs KIT/inputs/frame_000/<stage>.npz
  --backends torch,trt-fp16@KIT`, or `bisect --onnx KIT/<stage>.onnx … --backends ort,trt-fp16@KIT`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from cp_debug.backends.kit import kit_files as kf
from cp_debug.errors import BadInputError
from cp_debug.kit.content import KitContent, KitRequest, ReferenceRun, SampleFrame, reference_outputs

if TYPE_CHECKING:  # pragma: no cover
    import onnx

    from cp_debug.backends.trt.trt_profile import Profile
    from cp_debug.bisect.subjects.subject import Subject
    from cp_debug.lidar.record import ModelRecord

DEPLOYED_FILES = "the --onnx file"  # what a deployed folder holds (the kit takes --onnx FILE instead)
LINTS_FIX = False
BISECT_SUFFIX = ""  # the read-back command is whole


class GraphStage:
    """The one stage's names, as the kit writer reads a stage (`name`: a file name's safe spelling of the file's
    stem)."""

    def __init__(self, name: str, input_names: Sequence[str], output_names: Sequence[str]):
        self.name, self.input_names, self.output_names = name, tuple(input_names), tuple(output_names)


def model_config(name: str):
    raise BadInputError("a --torch / --onnx model has no presets: give the model as --torch FILE.py:FUNC or --onnx "
                        "FILE")


def check_model(model: "ModelRecord") -> None:
    """Nothing to say before the model loads (it is `--torch` / `--onnx`'s, loaded by the recipe)."""


def precisions(fix: Path | None, doc: dict | None, precision: Sequence[str] | None,
               params: Sequence[Path]) -> Sequence[str] | None:
    """The precisions the kit runs: those given (None: the kit's default)."""
    return precision


def bisect_command(m: kf.Manifest, precision: str) -> str:
    """The command that reads the target's results back: bisect of the one graph on the first sample, against the
    reference the kit was written with (the module in PyTorch, or ONNX Runtime on the kit's file)."""
    stage = m.stages[0].name
    inputs = f"--inputs KIT/{kf.onnx_inputs(m.frames[0].id, stage)}"
    if m.source.get("kind") == "torch":
        return f"cpdebug bisect --torch {m.source['path']} {inputs} --backends torch,trt-{precision}@KIT"
    return f"cpdebug bisect --onnx KIT/{stage}.onnx {inputs} --backends ort,trt-{precision}@KIT"


def readme_text(m: kf.Manifest) -> str:
    """What the README says of the one graph: where it came from, the profile and where each range came from."""
    import textwrap

    stage = m.stages[0].name
    given = m.source.get("ranges") or {}
    ranges = "; ".join(f"`{n}` min {_x(r['min'])}, opt {_x(r['opt'])}, max {_x(r['max'])}"
                       + (" (given)" if any(n in given.get(k, {}) for k in ("min", "max")) else " (the samples)")
                       for n, r in m.profile[stage].items())
    made = ("exported from " if m.source.get("kind") == "torch" else "") + f"`{m.source.get('path')}`"
    text = (f"The one graph `{stage}.onnx`, {made}; each frame is one sample of its inputs "
            f"(`inputs/<frame>/{stage}.npz`). The engine's optimization profile: {ranges}.")
    return "\n" + textwrap.fill(text, width=116, break_on_hyphens=False, break_long_words=False) + "\n"


def _x(shape) -> str:
    from cp_debug.backends.trt.trt_profile import shape_text

    return shape_text(shape)


def graph_content(req: KitRequest, subject: "Subject") -> KitContent:
    """The kit content of `subject`'s one graph (bisect's `--torch` / `--onnx` subject, loaded by the recipe;
    `subject.inputs`: the sample used where `--inputs` gives none) on the request's samples."""
    from cp_debug.backends.trt.trt_profile import check_within, given_profile, profile_from_shapes
    from cp_debug.samples.sets import Sample, graph_inputs, load_samples

    g = req.graph
    assert g is not None
    st = subject.stages[0]
    model = st.onnx()
    graph = graph_inputs(model, Path(g.onnx).name if g.onnx else f"{g.torch}()'s model")
    samples, notes = [], []
    for path in g.inputs:
        got, casts = load_samples(path, None, graph)
        samples += [(s, f"{path / (s.name + '.npz') if Path(path).is_dir() else path}") for s in got]
        notes += casts
    if not samples:
        what = "the example inputs of " + str(g.torch) if g.torch else f"seeded random inputs (--seed {req.model.seed})"
        samples = [(Sample("example" if g.torch else "random", dict(subject.inputs)), what)]
        notes.append(f"no --inputs: the kit's one sample is {what}")
    tokens = [s.name for s, _ in samples]
    if len(set(tokens)) != len(tokens):
        raise BadInputError("two --inputs samples share a name (a file stem): give each sample file its own name")
    stage = GraphStage(kf.safe_name(st.name), st.input_names, st.output_names)
    feeds = [{n: s.feed[n] for n in st.input_names} for s, _ in samples]
    shapes = [{n: tuple(a.shape) for n, a in f.items()} for f in feeds]
    prof = given_profile(profile_from_shapes(shapes), g.ranges, graph.shapes)
    for (s, _), sh in zip(samples, shapes):
        check_within(prof, sh, f"the range given (--min-shapes / --max-shapes; sample {s.name})")
    ref = ("torch", {"torch_module": st.module}) if st.module is not None else ("ort", {"onnx_model": model})
    outputs = reference_outputs(ref[0], stage, feeds, req.model.seed, **ref[1])
    runs = [ReferenceRun([f], [o]) for f, o in zip(feeds, outputs)]
    scans = [(s.name, SampleFrame(source)) for s, source in samples]

    def profile(i: int, frame_shapes: list) -> "Profile":
        return prof

    def write_onnx(tmp: Path) -> dict[str, "onnx.ModelProto"]:
        return {stage.name: _write_graph(model, g.onnx, tmp / f"{stage.name}.onnx")}

    ran = "the module in PyTorch (CPU, FP32)" if ref[0] == "torch" else "ONNX Runtime FP32 on the CPU"
    notes.append(f"reference: {ran}; profile: " + ", ".join(
        f"{n} {_x(r.min)}..{_x(r.max)} (opt {_x(r.opt)})" for n, r in prof.items()))
    return KitContent(scans, (stage,), runs, write_onnx, profile, notes, npz=True)


def _write_graph(model: "onnx.ModelProto", given: Path | None, path: Path) -> "onnx.ModelProto":
    """The kit's top-level file: `--onnx`'s bytes as given where its weights are inside it, else the model written
    with its weights in `<file>.data` beside it (a file given with external data; past 2 GiB)."""
    import shutil

    from cp_debug.graph.onnx_files import save_onnx
    from cp_debug.graph.onnx_read import external_locations

    if given is not None:
        import onnx

        outside = external_locations(onnx.load(str(given), load_external_data=False))
        if not outside:
            shutil.copyfile(given, path)
            return model
        save_onnx(model, path, external=True)
        return model
    save_onnx(model, path)
    return model
