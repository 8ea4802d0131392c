"""`cpdebug extract run.json --bundle DIR`: a bug-report bundle for a saved run.

The reference tensors of a run are not saved in its JSON, so the run's model is loaded again from what the
report records (recipe and preset, --torch source, or --onnx file, with their inputs), bisected again with the
same backends and settings, and the root cause of the candidate is bundled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from cp_debug.cli.common.options import Verbose, option
from cp_debug.cli.common.quiet import ThirdParty


def extract(
    run_json: Annotated[Path, typer.Argument(help="A report written by `cpdebug bisect --json`.")],
    bundle: Annotated[Path, option("--bundle", help="Directory to write the bundle to.")],
    candidate: Annotated[Optional[str],
                         typer.Option(help="Which candidate to bundle (default: the first that diverged).")] = None,
    tar: Annotated[bool, typer.Option(help="Also write DIR.tar.gz.")] = False,
    verbose: Verbose = False,
) -> None:
    """Re-run a saved bisect from its JSON report and write the failing subgraph as a bug-report bundle."""
    with ThirdParty(verbose=verbose) as third_party:
        _extract(run_json, bundle, candidate, tar, third_party)


def _extract(run_json: Path, bundle: Path, candidate: str | None, tar: bool, third_party: ThirdParty) -> None:
    from cp_debug.backends.spec import BackendSpec
    from cp_debug.bugreport.from_run import bundle_from_run
    from cp_debug.bisect.engine import BisectEngine, BisectOptions
    from cp_debug.cli.common.output import StepProgress
    from cp_debug.errors import BadInputError
    from cp_debug.report.io import load_report

    saved = load_report(run_json)
    labels = [c.label for c in saved.candidates if candidate in (None, c.label)]
    if not labels:
        raise BadInputError(f"{run_json} has no candidate {candidate!r}: it has "
                            f"{', '.join(c.label for c in saved.candidates)}")
    progress = StepProgress(stream=third_party.terminal)
    with progress.step("loading the run's model"):
        subject = _saved_subject(saved, run_json)
    s = saved.settings
    opts = BisectOptions(level=s.get("level"), refine=s.get("refine", True), deterministic=s.get("deterministic", True),
                         cudnn_algo=(s.get("determinism") or {}).get("cudnn_algo"),
                         noise_floor=s.get("noise_floor", True), local=True)
    engine = BisectEngine(subject, (saved.reference, BackendSpec.parse(saved.reference)),
                          [(lab, BackendSpec.parse(lab)) for lab in labels], opts, progress=progress)
    try:
        report = engine.run()
        report.model = saved.model
        report.third_party_warnings = [w.to_json() for w in third_party.warnings()]
        report.warnings.extend(third_party.own(beside=report.warnings))
        with progress.step(f"writing bug-report bundle {bundle}"):
            written = bundle_from_run(engine, report, bundle, candidate=candidate, make_tar=tar)
        if not written.reproduces:
            progress.warn(f"the bundle in {bundle} does not reproduce the divergence: {written.why}")
    finally:
        engine.close()
    from cp_debug.cli.common.output import stdout_console

    third_party.print_count(stdout_console(), where="the bundle's report.json")


def _saved_subject(saved, run_json: Path):
    """The run's model again: from its `model` record (CenterPoint), its --torch / --onnx source, or, for reports
    written before `model_record`, the recipe fields of its `model` facts."""
    from cp_debug.bisect.subjects.model_facts import OnnxFacts, RecipeFacts, TorchFacts
    from cp_debug.errors import BadInputError
    from cp_debug.lidar.record import ModelRecord

    f = saved.facts
    if isinstance(f, TorchFacts):
        from cp_debug.bisect.subjects.loaders import torch_subject

        seed = (saved.settings.get("determinism") or {}).get("seed") or 0  # the run's --seed: the same weights
        return torch_subject(f.source, f.inputs, exporter=f.exporter or "auto", seed=seed)
    if isinstance(f, OnnxFacts):
        from cp_debug.bisect.subjects.loaders import onnx_subject

        return onnx_subject(f.source, f.inputs, seed=f.seed or 0)
    from cp_debug.recipes import catalog

    recipe = f if isinstance(f, RecipeFacts) else None
    if saved.model is not None:
        record = saved.model
    elif recipe is not None:
        # runs recorded before the trained default said "random weights"
        random_weights = recipe.random_weights
        if random_weights is None:
            random_weights = str(recipe.weights or "").startswith("random")
        record = ModelRecord.of(recipe.preset, checkpoint=recipe.checkpoint, random_weights=bool(random_weights),
                                seed=recipe.seed or 0)
    else:
        raise BadInputError(f"{run_json} does not record which model it ran: re-run `cpdebug bisect --bundle DIR`")
    points_file = load_dim = use_dim = None  # a record without facts: the default scan
    if recipe is not None:
        if recipe.points_file is None and (recipe.point_cloud or {}).get("format") == "array":
            raise BadInputError(f"{run_json} bisected a scan held in memory ({recipe.points}), which it cannot load "
                                "again: bisect that frame's point file (cpdebug bisect --points FILE --bundle DIR)")
        points_file, load_dim, use_dim = recipe.points_file, recipe.load_dim, recipe.use_dim
    return catalog.recipe(recipe.recipe if recipe is not None else None).bisect_subject(
        record, points=points_file, load_dim=load_dim, use_dim=use_dim)
