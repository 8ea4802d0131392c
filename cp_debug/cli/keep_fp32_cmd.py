"""`cpdebug keep-fp32`: the nodes to keep in FP32 so that the FP16 model passes (a 1-minimal set)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from cp_debug.cli._options import Exporter, Inputs, Json, OnnxModel, Quiet, Seed, TorchModel, Verbose
from cp_debug.cli._quiet import ThirdParty

if TYPE_CHECKING:
    from cp_debug.backends.spec import BackendSpec
    from cp_debug.compare.diff import Tolerance


def keep_fp32(
    onnx_model: OnnxModel = None,
    torch_model: TorchModel = None,
    inputs: Inputs = None,
    backend: Annotated[str, typer.Option(
        "--backend", "-b", help="The FP16 backend: ort-cpu-fp16, ort-cuda-fp16 or trt-fp16.")] = "ort-cpu-fp16",
    candidates: Annotated[str,
                          typer.Option(help="compute (compute nodes + nodes near FP16's range), all, or "
                                            "comma-separated node names.")] = "compute",
    atol: Annotated[Optional[float],
                    typer.Option(help="Absolute tolerance on the graph outputs (default: FP16's).")] = None,
    rtol: Annotated[Optional[float],
                    typer.Option(help="Relative tolerance on the graph outputs (default: FP16's).")] = None,
    exporter: Exporter = "auto",
    seed: Seed = 0,
    json_out: Json = None,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Search a small set of nodes (1-minimal) to keep in FP32 for the FP16 model to match FP32.

    The reference is ONNX Runtime on the CPU in FP32; the set comes out in the form `cpdebug bisect --keep-fp32`
    takes."""
    with ThirdParty(verbose=verbose) as third_party:
        from cp_debug.backends.spec import BackendSpec
        from cp_debug.bisect.keep_fp32 import tolerance_for

        spec = BackendSpec.parse(backend)
        code = _keep_fp32(onnx_model, torch_model, inputs, spec, candidates, tolerance_for(spec.precision, atol, rtol),
                          exporter=exporter, seed=seed, json_out=json_out, quiet=quiet, third_party=third_party)
    raise typer.Exit(code)


def _keep_fp32(onnx_model: Path | None, torch_model: str | None, inputs: Path | None, spec: BackendSpec,
               candidates: str, tol: Tolerance, *, exporter: str, seed: int, json_out: str | None, quiet: bool,
               third_party: ThirdParty) -> int:
    from cp_debug.bisect.keep_fp32 import check_backend, find_keep_fp32
    from cp_debug.cli._output import StepProgress, stdout_console
    from cp_debug.cli._preflight import check_inputs, check_outputs
    from cp_debug.errors import BadInputError

    if bool(onnx_model) == bool(torch_model):
        raise BadInputError("give one model: --onnx FILE.onnx or --torch FILE.py:FUNC")
    check_backend(spec)  # before loading or exporting anything
    check_inputs(onnx=onnx_model, inputs=inputs)
    check_outputs(json_out)
    progress = StepProgress(quiet=quiet or json_out == "-", stream=third_party.terminal)
    with progress.step("loading the model"):
        model, feed = _load(onnx_model, torch_model, inputs, exporter, seed)
    names = candidates.strip()
    chosen = names if names in ("compute", "all") else [n.strip() for n in names.split(",") if n.strip()]
    result = find_keep_fp32(model, spec, feed, tol, chosen, progress=progress)
    from cp_debug.files import json_text, write_json

    caught = [w.to_json() for w in third_party.warnings()]
    doc = {**result.to_json(), "third_party_warnings": caught}
    if json_out == "-":
        print(json_text(doc))
    else:
        if json_out:
            write_json(json_out, doc)
        console = stdout_console()
        render(result, console)
        third_party.print_count(console, where="the JSON's third_party_warnings" if json_out else None)
    return 0 if result.found else 1


def _load(onnx_model, torch_model, inputs, exporter, seed):
    """(ONNX model, feed) through the loaders `cpdebug bisect` uses; one-stage models only."""
    from cp_debug.errors import BadInputError

    if onnx_model:
        from cp_debug.bisect.loaders import onnx_subject

        subject = onnx_subject(onnx_model, inputs, seed=seed)
    else:
        from cp_debug.bisect.loaders import torch_subject

        subject = torch_subject(torch_model, inputs, exporter=exporter)
    if len(subject.stages) != 1:
        raise BadInputError(f"{subject.name} has {len(subject.stages)} stages: keep-fp32 searches one ONNX model")
    return subject.stages[0].onnx(), subject.inputs


def render(result, console) -> None:
    """The steps as a table, then the set found, in the form `cpdebug bisect --keep-fp32` takes."""
    from rich.table import Table

    table = Table(title=f"keep-FP32 search on {result.backend} ({result.runs} runs, "
                        f"{len(result.candidates)} candidates)", title_justify="left")
    for col, kw in (("#", {"justify": "right"}), ("phase", {}), ("kept in FP32", {}), ("verdict", {}),
                    ("worst output", {}), ("rel. RMSE", {"justify": "right"}), ("s", {"justify": "right"})):
        table.add_column(col, **kw)
    for i, s in enumerate(result.steps, 1):
        verdict = "[green]pass[/green]" if s.passed else "[red]fail[/red]"
        table.add_row(str(i), s.phase, _kept(s.experiment), verdict, s.figures.worst_output or "-",
                      f"{s.figures.worst_rel_rmse:.3g}", f"{s.seconds:.2f}")
    console.print(table)
    p = result.precision
    if p is not None and not p.honest:
        console.print(f"[yellow]note:[/yellow] {result.backend} ran {p.effective}, not {p.requested}: "
                      + "; ".join(p.notes), highlight=False)
    elif p is not None and any("storage emulated" in n for n in p.notes):
        console.print(f"[dim]note: {result.backend}: {'; '.join(p.notes)}[/dim]", highlight=False)
    if result.status == "not_needed":
        console.print("[green]The FP16 model passes as it is: no node needs to stay in FP32.[/green]")
    elif result.status == "impossible":
        worst = max((d.rel_rmse for d in result.final), default=float("nan"))
        console.print(f"[red]Even with all {len(result.candidates)} candidates in FP32 the outputs fail[/red] "
                      f"(worst rel. RMSE {worst:.3g}): FP16 of these nodes does not explain the divergence; "
                      "try --candidates all, or `cpdebug bisect`.", highlight=False)
    else:
        console.print(f"[green]Keep {len(result.keep)} node(s) in FP32[/green] (1-minimal: dropping any one fails):",
                      highlight=False)
        for name in result.keep:
            console.print(f"  {name}", highlight=False)
        console.print(f"cpdebug bisect ... {result.keep_fp32_option()}", highlight=False, soft_wrap=True)


def _kept(keep: tuple[str, ...], k: int = 2) -> str:
    if not keep:
        return "(none)"
    shown = ", ".join(keep[:k])
    return f"{len(keep)}: {shown}" + (f" … +{len(keep) - k}" if len(keep) > k else "")
