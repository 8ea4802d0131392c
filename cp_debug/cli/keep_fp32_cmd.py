"""`cpdebug keep-fp32`: the nodes to keep in FP32 so that the FP16 model passes (a 1-minimal set).

With `--recipe transfusion` it is the fix's search of TransFusion-L's one graph (`recipes/transfusion/fix.py`), mapped
thinly: the same request `cpdebug fix --recipe transfusion` makes, the same judge and search, the same document
(`cp_debug.fix/1`) and, with `--out`, the same deployable folder. One graph over held-out frames judged flip-aware
is what both commands do there; a second search would be a copy."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from cp_debug.cli.common.options import (Checkpoint, Exporter, Inputs, Json, OnnxModel, Quiet, RandomWeights, Recipe,
                                   TorchModel, TorchSeed, Verbose, option, search_nodes_option)
from cp_debug.cli.common.quiet import ThirdParty

if TYPE_CHECKING:
    from cp_debug.backends.spec import BackendSpec
    from cp_debug.compare.diff import Tolerance


def _tf(kind, name: str, text: str, *more: str, shown: str | bool = True):
    """An option of `--recipe transfusion` alone (None: not given; `shown`: the default its page shows then)."""
    return Annotated[Optional[kind], option(name, *more, show_default=shown, help="With --recipe transfusion: " + text)]


def keep_fp32(
    onnx_model: OnnxModel = None,
    torch_model: TorchModel = None,
    inputs: Inputs = None,
    backend: Annotated[str, option(
        "--backends", "-b", metavar="SPEC", help="The one FP16 candidate (the reference is ONNX Runtime FP32 on the "
        "CPU): ort-cpu-fp16, ort-cuda-fp16 or trt-fp16.")] = "ort-cpu-fp16",
    candidates: Annotated[str, search_nodes_option(
        "The nodes the search may keep in FP32: compute (compute nodes + nodes near FP16's range), all, or "
        "comma-separated node names.")] = "compute",
    atol: Annotated[Optional[float],
                    option("--atol", help="Absolute tolerance on the graph outputs (default: FP16's, and every output "
                                          "within FP16's precision budget, as bisect judges).")] = None,
    rtol: Annotated[Optional[float],
                    option("--rtol", help="Relative tolerance on the graph outputs (default: FP16's).")] = None,
    metric: Annotated[Optional[str], option(
        "--metric", metavar="NAME|FILE.py:FUNC", help="The application's decision, as bisect's --metric: a built-in "
        "(top1, argmax, ...) or FUNC(outputs, reference, label) seeing every output by name; a run whose value "
        "changes fails, its outputs within budget or not. Without it, Sigmoid / Softmax outputs are read at 0.5 / "
        "argmax, as bisect reads them.")] = None,
    exporter: Exporter = "auto",
    seed: TorchSeed = 0,
    recipe: Recipe = None,
    preset: _tf(str, "--preset", "the TransFusion-L preset.",
                 shown="transfusion-demo") = None,
    checkpoint: Checkpoint = None,
    random_weights: RandomWeights = False,
    scenes: _tf(int, "--n", "held-out synthetic frames the search judges on.", shown="8") = None,
    verify_scenes: _tf(int, "--verify-n", "verify on this many frames after the search's (0: on the "
                       "search's).", shown="0") = None,
    out: _tf(Path, "--out", "write the deployable transfusion.onnx with the set kept in FP32 (the folder `cpdebug "
             "fix --out` writes; `cpdebug fix --check DIR` re-verifies it).", "-o") = None,
    json_out: Json = None,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Search a small set of nodes (1-minimal) to keep in FP32 for the FP16 model to match FP32.

    The reference is ONNX Runtime on the CPU in FP32; the set comes out in the form `cpdebug bisect --keep-fp32`
    takes. With --recipe transfusion: the search of `cpdebug fix --recipe transfusion` (the one graph, judged
    flip-aware over held-out frames), its fix.json document as --json."""
    with ThirdParty(verbose=verbose) as third_party:
        from cp_debug.backends.spec import BackendSpec
        from cp_debug.bisect.cures.keep_fp32 import searched_candidates, tolerance_for
        from cp_debug.cli.common.options import recipe_name
        from cp_debug.errors import BadInputError

        # bisect's REF,CAND form too, where REF is the search's reference (or, for --torch, the module's FP32)
        named = searched_candidates(backend, torch_given=bool(torch_model))
        if len(named) != 1:
            raise BadInputError(f"--backends {backend}: keep-fp32 takes the one FP16 candidate (its reference is "
                                "ONNX Runtime FP32 on the CPU)")
        spec = BackendSpec.parse(named[0])
        model = {"preset": preset, "checkpoint": str(checkpoint) if checkpoint else None, "seed": seed,
                 "random_weights": random_weights or None, "scenes": scenes, "verify_scenes": verify_scenes}
        from cp_debug.recipes.catalog import recipe as recipe_of

        r = recipe_of(recipe_name(recipe))
        if r.keep_fp32_is_fix:
            given = [o for o, v in (("--onnx", onnx_model), ("--torch", torch_model), ("--inputs", inputs),
                                    ("--atol", atol), ("--rtol", rtol), ("--metric", metric)) if v is not None]
            if given:
                raise BadInputError(f"{', '.join(given)}: not for keep-fp32 --recipe {r.name} (it exports the "
                                    "model's one graph and judges it per query over held-out frames, within FP16's "
                                    "precision)")
            code = _by_fix(r, model, str(spec), candidates, out=out, json_out=json_out, quiet=quiet,
                                third_party=third_party)
        else:
            extra = [o for o, v in (("--preset", preset), ("--checkpoint", checkpoint), ("--n", scenes),
                                    ("--verify-n", verify_scenes), ("--out", out),
                                    ("--random-weights", random_weights or None)) if v is not None]
            if extra:
                raise BadInputError(f"{', '.join(extra)}: for --recipe transfusion only; keep-fp32 of --onnx / "
                                    "--torch searches the one model given and writes no model (`cpdebug fix --torch|"
                                    "--onnx … --out DIR` writes it with the set kept in FP32)")
            code = _keep_fp32(onnx_model, torch_model, inputs, spec, candidates,
                              tolerance_for(spec.precision, atol, rtol), exporter=exporter, seed=seed,
                              json_out=json_out, quiet=quiet, third_party=third_party,
                              fixed=atol is not None or rtol is not None, metric=metric)
    raise typer.Exit(code)


def _keep_fp32(onnx_model: Path | None, torch_model: str | None, inputs: Path | None, spec: BackendSpec,
               candidates: str, tol: Tolerance, *, exporter: str, seed: int, json_out: str | None, quiet: bool,
               third_party: ThirdParty, fixed: bool = False, metric: str | None = None) -> int:
    from cp_debug.bisect.cures.keep_fp32 import check_backend, find_keep_fp32
    from cp_debug.cli.common.output import StepProgress, stdout_console
    from cp_debug.cli.common.preflight import check_inputs, check_outputs
    from cp_debug.errors import BadInputError

    if bool(onnx_model) == bool(torch_model):
        raise BadInputError("give one model: --onnx FILE.onnx or --torch FILE.py:FUNC")
    check_backend(spec)  # before loading or exporting anything
    check_inputs(onnx=onnx_model, inputs=inputs)
    check_outputs(json_out)
    from cp_debug.samples.tasks import task_metric

    task = task_metric(metric) if metric is not None else None  # a wrong name or file: exit 2 before the model
    progress = StepProgress(quiet=quiet or json_out == "-", stream=third_party.terminal)
    with progress.step("loading the model"):
        model, feed, modules = _load(onnx_model, torch_model, inputs, exporter, seed, spec)
    names = candidates.strip()
    chosen = names if names in ("compute", "all") else [n.strip() for n in names.split(",") if n.strip()]
    result = find_keep_fp32(model, spec, feed, tol, chosen, progress=progress, module_names=modules,
                            mode="fixed" if fixed else "model", metric=task)
    from cp_debug.cli.common.output import with_own
    from cp_debug.files import json_text, write_json

    doc = with_own(result.to_json(), third_party)
    if json_out == "-":
        print(json_text(doc))
    else:
        if json_out:
            write_json(json_out, doc)
        console = stdout_console()
        render(result, console, _bisect_command(onnx_model, torch_model, inputs, spec, metric))
        third_party.print_count(console, where="the JSON's third_party_warnings" if json_out else None)
    return 0 if result.found else 1


def _bisect_command(onnx_model, torch_model, inputs, spec: BackendSpec, metric: str | None = None) -> str:
    """The `cpdebug bisect` command of this model with the set found (issue 117: it was printed with a literal
    `...` for the model, to be filled in by hand)."""
    import shlex

    model = f"--onnx {shlex.quote(str(onnx_model))}" if onnx_model else f"--torch {shlex.quote(str(torch_model))}"
    given = f" --inputs {shlex.quote(str(inputs))}" if inputs else ""
    given += f" --metric {shlex.quote(metric)}" if metric else ""
    return f"cpdebug bisect {model}{given} --backends {'ort' if onnx_model else 'torch'},{spec}"


def _load(onnx_model, torch_model, inputs, exporter, seed, spec: BackendSpec):
    """(ONNX model, feed, the module's qualified names) through the loaders `cpdebug bisect` uses; one-stage
    models only; a model too big for the machine (the search's FP32 reference and `spec`) said before its export."""
    from cp_debug.backends.spec import BackendSpec as Spec
    from cp_debug.bisect.stages.fits import check_fits, subject_weights
    from cp_debug.errors import BadInputError

    if onnx_model:
        from cp_debug.bisect.subjects.deployed import refuse_unloadable_given
        from cp_debug.bisect.subjects.loaders import onnx_subject

        subject = onnx_subject(onnx_model, inputs, seed=seed)  # a broken file: exit 2
        refuse_unloadable_given(onnx_model, [Spec.parse("ort")])  # the search's reference runs it as it is (exit 3)
    else:
        from cp_debug.bisect.subjects.loaders import torch_subject

        subject = torch_subject(torch_model, inputs, exporter=exporter)
    if len(subject.stages) != 1:
        raise BadInputError(f"{subject.name} has {len(subject.stages)} stages: keep-fp32 searches one ONNX model")
    weights, resident = subject_weights(subject)
    check_fits(weights, [Spec.parse("ort"), spec], resident, doing="search")
    stage = subject.stages[0]
    modules = [q for q, _ in stage.module.named_modules()] if stage.module is not None else []
    return stage.onnx(), subject.inputs, modules


def render(result, console, command: str) -> None:
    """The steps as a table, then the set found, in the form `cpdebug bisect --keep-fp32` takes (`command`: the
    bisect command of this model it completes)."""
    from rich.table import Table

    table = Table(title=f"keep-FP32 search on {result.backend} ({result.runs} runs, "
                        f"{len(result.candidates)} candidates)", title_justify="left")
    for col, kw in (("#", {"justify": "right"}), ("phase", {}), ("kept in FP32", {}), ("verdict", {}),
                    ("worst output", {}), ("rel. RMSE", {"justify": "right"}), ("s", {"justify": "right"})):
        table.add_column(col, **kw)
    for i, s in enumerate(result.steps, 1):
        flips = sum(d.flipped for d in s.figures.flipped)
        verdict = "[green]pass[/green]" if s.passed else "[red]fail[/red]" + (
            f" ({flips} decision(s) flipped)" if flips else "")
        table.add_row(str(i), s.phase, _kept(s.experiment), verdict, s.figures.worst_output or "-",
                      f"{s.figures.worst_rel_rmse:.3g}", f"{s.seconds:.2f}")
    from cp_debug.report.table import print_whole

    print_whole(console, table)
    p = result.precision
    if p is not None and not p.honest:
        console.print(f"[yellow]note:[/yellow] {result.backend} ran {p.effective}, not {p.requested}: "
                      + "; ".join(p.notes), highlight=False)
    elif p is not None and any("storage emulated" in n for n in p.notes):
        console.print(f"[dim]note: {result.backend}: {'; '.join(p.notes)}[/dim]", highlight=False)
    moved = result.steps[0].figures.flipped if result.steps and not result.steps[0].experiment else ()
    if moved:  # the decisions the FP16 model moves as it is: why it does not pass, said with their margins
        console.print("the decisions it moves as it is: " + "; ".join(d.summary for d in moved), highlight=False,
                      markup=False)
    if result.status == "not_needed":
        console.print("[green]The FP16 model passes as it is: no node needs to stay in FP32.[/green]")
    elif result.status == "tie":
        console.print(f"[yellow]No FP32 set searched:[/yellow] {result.tie}", highlight=False)
    elif result.status == "impossible":
        worst = max((d.rel_rmse for d in result.final), default=float("nan"))
        still = (f"; {sum(d.flipped for d in result.flipped)} decision(s) still flip" if result.flipped else "")
        console.print(f"[red]Even with all {len(result.candidates)} candidates in FP32 the outputs fail[/red] "
                      f"(worst rel. RMSE {worst:.3g}{still}): FP16 of these nodes does not explain the divergence; "
                      "try --search-nodes all, or `cpdebug bisect`.", highlight=False)
    else:
        console.print(f"[green]Keep {len(result.keep)} node(s) in FP32[/green] (1-minimal: dropping any one fails):",
                      highlight=False)
        for label in result.labels():
            console.print(f"  {label}", highlight=False)
        console.print(f"{command} {result.keep_fp32_option()}", highlight=False, soft_wrap=True)


def _by_fix(r, model: dict, candidate: str, candidates: str, *, out: Path | None, json_out: str | None, quiet: bool,
            third_party: ThirdParty) -> int:
    """keep-fp32 of recipe `r` whose keep-fp32 is its fix (`Recipe.keep_fp32_is_fix`: TransFusion-L's one graph):
    `fix.run.run_fix` on the request `fix --recipe NAME` makes (module docstring); the exit code is the fix's (0
    found or not needed and verified, 1 impossible, 5 not verified)."""
    from cp_debug.cli.common.output import StepProgress, finish
    from cp_debug.cli.common.preflight import check_outputs
    from cp_debug.errors import BadInputError
    from cp_debug.fix.names import SEP
    from cp_debug.fix.request import check_request, make_request
    from cp_debug.fix.run import run_fix
    from cp_debug.fix.targets import FixTarget
    from cp_debug.lidar.record import ModelRecord

    onnx_file = r.graph_files[0]
    names = candidates.strip()
    if names == "all":
        raise BadInputError(f"--search-nodes all: keep-fp32 --recipe {r.name} ranks the graph's compute nodes "
                            "(compute) or takes node names")
    chosen = None if names == "compute" else tuple(
        n if n.startswith(onnx_file + SEP) else f"{onnx_file}{SEP}{n}" for n in (x.strip() for x in names.split(","))
        if n)
    if out is not None and out.exists() and not out.is_dir():
        raise BadInputError(f"--out {out} is a file; give a directory")
    check_outputs(json_out)
    req = make_request(ModelRecord(), {"source": {"from": "keep-fp32"}},
                       {**model, "preset": model["preset"] or r.default_preset, "target": FixTarget.of(),
                        "candidate": candidate, "reference": "torch", "candidates": chosen, "recipe": r})
    check_request(req)
    progress = StepProgress(quiet=quiet or json_out == "-", stream=third_party.terminal)
    outcome = run_fix(req, progress=progress)
    written = outcome.write(out) if out is not None and outcome.fixed is not None else None
    finish({**outcome.to_json(), "out": str(written) if written else None}, json_out, third_party,
           lambda console: _render_graph(outcome, written, console))
    return outcome.exit_code


def _render_graph(outcome, written: Path | None, console) -> None:
    """The fix search's steps on the one graph (each judged flip-aware on its frames), then the set."""
    from rich.table import Table

    s = outcome.search
    graph = outcome.request.recipe.graph_files[0]
    table = Table(title=f"keep-FP32 search of {graph} on {outcome.request.candidate} ({s.runs} runs, "
                        f"{len(s.candidates)} candidates, judged per query with proposal flips)", title_justify="left")
    for col in ("#", "phase", "kept in FP32", "frames", "verdict", "outcome", "worst output", "rel. RMSE", "flips"):
        table.add_column(col, justify="right" if col in ("#", "rel. RMSE", "flips") else "left")
    for i, st in enumerate(s.steps, 1):
        f = st.figures.figures
        table.add_row(str(i), st.phase, _kept(st.experiment), st.figures.checked,
                      "[green]pass[/green]" if st.passed else "[red]fail[/red]",
                      f.outcome.words if f.outcome is not None else "-", max(f.worst_output, default="-"),
                      f"{f.worst:.3g}", str(sum(f.extra.get("flips") or [])))
    from cp_debug.report.table import print_whole

    print_whole(console, table)
    if s.status == "impossible":
        console.print(f"[red]Even with all {len(s.candidates)} candidates in FP32 the graph is not within FP16's "
                      "precision[/red]: nothing to write.", highlight=False)
        return
    nodes = [k.partition(":")[2] for k in s.keep]
    console.print(f"[green]Keep {len(nodes)} node(s) in FP32[/green]" + (" (1-minimal):" if nodes else
                  ": the FP16 graph is within precision as it is."), highlight=False)
    for name in nodes:
        console.print(f"  {name}", highlight=False)
    v = outcome.verification
    console.print(f"verified on {len(v.frames)} frame(s): " + ("[green]holds[/green]" if v.holds else
                  "[red]does not hold[/red]"), highlight=False)
    if written is not None:
        console.print(f"written: {written} (`cpdebug fix --check {written}` re-verifies it)", highlight=False,
                      soft_wrap=True)


def _kept(keep: tuple[str, ...], k: int = 2) -> str:
    if not keep:
        return "(none)"
    shown = ", ".join(keep[:k])
    return f"{len(keep)}: {shown}" + (f" … +{len(keep) - k}" if len(keep) > k else "")
