"""A bisect request run: the model loaded (`load_subject`), the engine built on it (`start_engine`) — the same steps
for `cpdebug bisect` (which adds its warm-ups, lint and writers around them) and for the library's `cp_debug.bisect`."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cp_debug.api.bisect_request import BisectRequest, SubjectRequest
    from cp_debug.backends.spec import BackendSpec
    from cp_debug.bisect.engine import BisectEngine
    from cp_debug.bisect.phases import Phases
    from cp_debug.bisect.result import BisectReport
    from cp_debug.bisect.subjects.subject import Subject


def load_subject(request: SubjectRequest, specs: list[BackendSpec]) -> Subject:
    """The model as a Subject: a --torch module (a FILE.py:FUNC run, or a module in-process), an --onnx file (run by
    ONNX Runtime as it is first: a file it refuses is one line, exit 3), or the recipe's."""
    from cp_debug.backends.spec import Capability
    from cp_debug.data.point_files import parse_use_dim

    if request.torch_model and request.generate:
        from cp_debug.bisect.subjects.torch_generation import torch_generation_subject

        if not isinstance(request.torch_model, str):
            from cp_debug.errors import BadInputError

            raise BadInputError("--generate with --torch takes FILE.py:FUNC (a causal LM and its input_ids)")
        return torch_generation_subject(request.torch_model, request.inputs, request.seed, request.generate, specs,
                                        exporter=request.exporter)
    if request.torch_model:
        from cp_debug.bisect.subjects.loaders import torch_subject

        return torch_subject(request.torch_model, request.inputs, exporter=request.exporter, seed=request.seed,
                             dynamic=request.dynamic)
    if request.onnx_model:
        from cp_debug.bisect.subjects.deployed import refuse_unloadable_given
        from cp_debug.bisect.subjects.loaders import onnx_subject

        if request.generate:
            from cp_debug.bisect.subjects.generation import generation_subject

            subject = generation_subject(request.onnx_model, request.inputs, request.seed, request.generate, specs)
        else:
            subject = onnx_subject(request.onnx_model, request.inputs, seed=request.seed)  # a broken file: exit 2
        if subject.pending_decode is None:  # else checked where its session cannot be made
            refuse_unloadable_given(request.onnx_model, specs)  # then the file as ONNX Runtime takes it (exit 3)
        return subject
    from cp_debug.recipes.catalog import recipe
    from cp_debug.bisect.subjects.subject import ONNX_RUNTIME_ONLY

    # a run of ONNX Runtime's alone may read a preset's subject back without torch (`kept_subject.py`)
    token = ONNX_RUNTIME_ONLY.set(all(s.can(Capability.ORT_SESSIONS) and not s.is_torch and s.onnx_dir is None
                                      and not s.calibrated for s in specs))
    try:
        return recipe(request.recipe).bisect_subject(request.model, points=request.points,
                                                     load_dim=request.load_dim, use_dim=parse_use_dim(request.use_dim),
                                                     params=request.params)
    finally:
        ONNX_RUNTIME_ONLY.reset(token)


def start_engine(request: BisectRequest, progress, phases: Phases) -> BisectEngine:
    """The engine of `request`, its model loaded (what the loading said, as warnings on `progress`) and the
    calibration samples fed to it; the caller runs it and closes it."""
    from cp_debug.bisect.engine import BisectEngine

    specs = [spec for _, spec in request.pairs]
    with progress.step("loading the model"), phases.timed("load"):
        subject = load_subject(request.subject, specs)
    for line in subject.told:  # before the run: the report's warnings come after it
        progress.warn(line)
    opts = request.options
    if request.calib:
        from cp_debug.bisect.subjects.feeds import calibration_feeds, free_first

        feeds, said = calibration_feeds(request.calib, subject.feed(0, {}), "the model", "the model's input is",
                                        free_first(subject.stages[0].onnx_model))
        subject.warnings.extend(said)
        opts = replace(opts, calib_feeds=tuple(feeds))
    return BisectEngine(subject, request.pairs[0], list(request.pairs[1:]), opts, progress=progress, phases=phases)


def run_request(request: BisectRequest, progress=None) -> BisectReport:
    """`request` run to its report, quietly (the library's path: no files, no terminal); a candidate whose library
    refused to run here raises its one line (exit 3), as the command does once its report is written."""
    from cp_debug.backends.factory import check_available
    from cp_debug.bisect.phases import Phases
    from cp_debug.bisect.run_state import NullProgress

    for _, spec in request.pairs:  # a backend this machine lacks: said before the model loads
        check_available(spec)
    engine = start_engine(request, progress or NullProgress(), Phases())
    try:
        report = engine.run()
    finally:
        engine.close()
    if request.subject.model is not None:
        report.model = request.subject.model
    if report.refusal is not None:
        raise report.refusal
    return report
