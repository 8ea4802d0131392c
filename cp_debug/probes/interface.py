"""The interface of a user's deployed ONNX checked against the model's own stage, before anything runs.

Compared with cp_debug's export of the same stage: input and output names, ranks and every dimension both files fix
(channel counts). The mix-ups seen in the wild are named, as they cost a whole deployment each:
- the voxel encoder fed processed pillar features, (N, 1, 32), where the raw decorated voxel features (N, 32, C)
  belong (an AWML report's max diff of 99);
- a file that takes more feature channels than the model computes (11 where it has 10): the deployed glue then
  zero-pads the features instead of computing them (TensorRT mAP 0.08 against 0.44 in ONNX);
- a head output that already went through a Sigmoid: the decoder applies it again.
Each problem is one clause of one line (`InterfaceMismatchError`, exit 2).

Output names are the exporter's, not the model's: torch.onnx names an output after its last node (`linear`) where
cp_debug's export writes `output0`. A file whose interface fits but for its output names (and its one input's name)
is read with ours, by order (`adopt_output_names`), and the report's notes say which name became which.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx

from cp_debug.errors import BadInputError
from cp_debug.graph.model import static_dims


class InterfaceMismatchError(BadInputError):
    """A deployed ONNX file's inputs or outputs do not fit the model's stage (exit 2)."""


@dataclass(frozen=True)
class TensorSig:
    name: str
    dims: tuple[int | None, ...]  # None where the file leaves the dimension open
    producer: str | None = None  # the op type that computes it (outputs only)

    def shown(self) -> str:
        return "(" + ", ".join("?" if d is None else str(d) for d in self.dims) + ")"


def interface(model: onnx.ModelProto) -> tuple[dict[str, TensorSig], dict[str, TensorSig]]:
    """(inputs, outputs) of a graph by name; initializers listed as inputs (old IR) are left out."""
    inits = {i.name for i in model.graph.initializer}
    producer = {t: n.op_type for n in model.graph.node for t in n.output}

    def sig(vi, prod=None) -> TensorSig:
        return TensorSig(vi.name, static_dims(vi.type) or (), prod)

    ins = {vi.name: sig(vi) for vi in model.graph.input if vi.name not in inits}
    outs = {vi.name: sig(vi, producer.get(vi.name)) for vi in model.graph.output}
    return ins, outs


def interface_problems(deployed: onnx.ModelProto, ours: onnx.ModelProto) -> list[str]:
    """What does not fit, one clause each (empty: the deployed file takes and gives what the model's stage does)."""
    d_in, d_out = interface(deployed)
    o_in, o_out = interface(ours)
    out_dims = {s.dims[-1] for s in o_out.values() if s.dims and s.dims[-1]}
    problems: list[str] = []
    for name, want in o_in.items():
        got = d_in.get(name)
        if got is None:
            problems.append(f"no input {name!r} (it takes {', '.join(d_in) or 'nothing'})")
            continue
        mixup = _input_mixup(name, got, want, out_dims)
        if mixup:
            problems.append(mixup)
        elif (bad := _dims_differ(got, want)) is not None:
            problems.append(f"input {name!r} is {got.shown()} but the model's stage takes {want.shown()}{bad}")
    extra = [n for n in d_in if n not in o_in]
    if extra:
        problems.append(f"extra input(s) {', '.join(extra)} the model's stage does not have")
    for name, want in o_out.items():
        got = d_out.get(name)
        if got is None:
            problems.append(f"no output {name!r} (it gives {', '.join(d_out) or 'nothing'})")
            continue
        if got.producer == "Sigmoid" and want.producer != "Sigmoid":
            problems.append(f"output {name!r} already went through a Sigmoid (sigmoid inside the exported head: the "
                            "decoder applies it again; export the raw logits)")
        elif (bad := _dims_differ(got, want)) is not None:
            problems.append(f"output {name!r} is {got.shown()} but the model's stage gives {want.shown()}{bad}")
    return problems


def adopt_output_names(deployed: onnx.ModelProto, ours: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, str]]:
    """`deployed` with its outputs renamed to `ours`' names, by order — and its input too where each side has one
    (diffusers' VAE decoder file takes `latent_sample` where the module's argument is `z`; with several inputs of
    one shape an order could swap them silently: those keep the file's names and their clear line) —, where that
    is all that keeps the interfaces apart: as many outputs, none of ours among the file's tensor names, and every
    other check passing once renamed. Returns the model (the same object where nothing is renamed) and the renames
    (file's name → ours)."""
    d_out, o_out = [o.name for o in deployed.graph.output], [o.name for o in ours.graph.output]
    d_in = [i.name for i in deployed.graph.input if i.name not in {t.name for t in deployed.graph.initializer}]
    o_in = [i.name for i in ours.graph.input if i.name not in {t.name for t in ours.graph.initializer}]
    if len(d_out) != len(o_out) or (d_out == o_out and d_in == o_in) or not interface_problems(deployed, ours):
        return deployed, {}
    renames = {d: o for d, o in zip(d_out, o_out) if d != o}
    if len(d_in) == len(o_in) == 1 and d_in != o_in:
        renames[d_in[0]] = o_in[0]
    taken = {t for n in deployed.graph.node for t in (*n.input, *n.output)} | {i.name for i in deployed.graph.input}
    taken |= {i.name for i in deployed.graph.initializer}
    if any(o in taken for o in renames.values()):
        return deployed, {}  # one of our names is another tensor of the file: no rename is certain
    import onnx_graphsurgeon as gs

    from cp_debug.graph.model import export_like

    graph = gs.import_onnx(deployed)
    for t in [*graph.inputs, *graph.outputs]:
        t.name = renames.get(t.name, t.name)
    renamed = export_like(graph, deployed)
    if interface_problems(renamed, ours):
        return deployed, {}
    return renamed, renames


def check_interface(deployed: onnx.ModelProto, ours: onnx.ModelProto, where: str) -> None:
    """Raise InterfaceMismatchError, one line naming `where` and every problem, unless the interfaces fit."""
    problems = interface_problems(deployed, ours)
    if problems:
        raise InterfaceMismatchError(f"{where} does not fit the model: " + "; ".join(problems))


def _dims_differ(got: TensorSig, want: TensorSig) -> str | None:
    """None where ranks agree and no dimension fixed by both files differs; else a short reason."""
    if len(got.dims) != len(want.dims):
        return f" (rank {len(got.dims)} instead of {len(want.dims)})"
    for k, (g, w) in enumerate(zip(got.dims, want.dims)):
        if g is not None and w is not None and g != w:
            return f" (dimension {k}: {g} instead of {w})"
    return None


def _input_mixup(name: str, got: TensorSig, want: TensorSig, out_dims: set[int]) -> str | None:
    """The known mix-ups of a (N, points, channels) feature input, named; None for anything else."""
    if len(want.dims) != 3 or not want.dims[-1] or len(got.dims) != 3 or got.dims[-1] is None:
        return None
    c_got, c_want = got.dims[-1], want.dims[-1]
    if c_got == c_want:
        return None
    if c_got in out_dims or got.dims[1] == 1:
        return (f"input {name!r} is {got.shown()} where the model takes {want.shown()}: processed pillar features "
                f"where raw decorated voxel features belong (export the voxel encoder on the {c_want} decorated "
                "features per point)")
    if c_got > c_want:
        return (f"input {name!r} takes {c_got} feature channels where the model computes {c_want}: zero-padding the "
                f"features to {c_got} feeds zeros where computed features belong (export with the model's in_channels)")
    return None
