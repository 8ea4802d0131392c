"""Any one-graph model, loaded once for a run over many samples: `--torch FILE.py:FUNC` (exported once, by the
exporter bisect uses, through the export cache) or `--onnx FILE.onnx`, as bisect's loaders read them; each backend's
runner is built from it (`runner`), and one sample is bisected on the same subject (`bisect`), so nothing is loaded or
exported again per sample."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from cp_debug.errors import BadInputError
from cp_debug.samples.sets import GraphInputs, graph_inputs

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.backends.base import Runner
    from cp_debug.backends.spec import BackendSpec
    from cp_debug.bisect.result import BisectReport
    from cp_debug.bisect.subjects.subject import Subject
    from cp_debug.export.dynamic import DynamicAxes


@dataclass(frozen=True)
class ModuleModel:
    """The model of a generic run: bisect's one-stage subject (its torch module, its ONNX graph), the graph's inputs
    and where it came from (the reports' `model`)."""

    subject: "Subject"
    graph: GraphInputs
    source: dict  # {"torch": FILE.py:FUNC, "exporter": ...} or {"onnx": path}
    deployed: dict = field(default_factory=dict, compare=False)  # a SPEC@DIR's files, read once (`deployed_files`)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(self.subject.stages[0].output_names)

    def runner(self, spec: "BackendSpec", **opts) -> "Runner":
        """`spec`'s runner (built, not activated) on this model: the module for torch, the graph for the others."""
        from cp_debug.backends import make_runner

        stage = self.subject.stages[0]
        if spec.is_torch and stage.module is None:
            raise BadInputError(f"{spec} runs the PyTorch module: give --torch FILE.py:FUNC, not --onnx")
        if spec.onnx_dir is not None:  # SPEC@DIR: the user's file as it is, in place of the export
            found = self.deployed_files(spec)
            spec, stage = found.spec or spec, found.stages[0]
        return make_runner(spec, torch_module=stage.module, onnx_model=stage.onnx() if spec.runs_onnx else None,
                           input_names=list(stage.input_names), output_names=list(self.output_names), **opts)

    def deployed_files(self, spec: "BackendSpec"):
        """`spec`'s deployed file (SPEC@DIR) read, checked against the model and mapped once, as bisect reads it
        (`subjects.deployed.deployed_stages`: a file ONNX Runtime refuses is exit 3, one of other weights exit 2);
        its `spec` is the candidate as it runs (the precision the file holds)."""
        key = (spec.framework, spec.device, str(spec.onnx_dir))
        if key not in self.deployed:
            from cp_debug.bisect.subjects.deployed import deployed_stages

            self.deployed[key] = deployed_stages(spec, self.subject, {})
        return self.deployed[key]

    def bisect(self, feed: Mapping[str, np.ndarray], reference: tuple[str, "BackendSpec"],
               candidate: tuple[str, "BackendSpec"], options) -> "BisectReport":
        """The bisect of one sample (`options`: bisect's `BisectOptions`), on the subject already loaded."""
        from cp_debug.bisect.engine import BisectEngine

        engine = BisectEngine(replace(self.subject, inputs=dict(feed), warnings=[]), reference, [candidate], options)
        try:
            return engine.run()
        finally:
            engine.close()


def load_module_model(torch_target: str | None, onnx_path: Path | None, *, exporter: str = "auto",
                      seed: int = 0, need_feed: bool = True, backends: "Sequence[BackendSpec]" = (),
                      dynamic: "DynamicAxes | None" = None, shapes: Sequence[Mapping[str, tuple]] = (),
                      ranged: "DynamicAxes | None" = None, example_at: "str | Path | None" = None) -> ModuleModel:
    """`--torch FILE.py:FUNC` (FUNC runs: the user's code) or `--onnx FILE.onnx`: one graph, exported once.
    `need_feed=False`: the caller brings its samples, so an ONNX file gets no seeded inputs (nor needs fixed
    shapes for them). `backends`: what the caller will run it on — a model too big for the machine with them is one
    line (exit 3) before the export (`bisect.stages.fits`). `dynamic` (`--dynamic`) and `shapes` (the samples'
    input shapes) and `ranged` (the axes a declared range moves): a `--torch` model's dynamic axes, as
    `bisect.subjects.loaders.torch_subject` takes them; the model's `source` says them where it has any.
    `example_at`: the samples (an .npz or a folder) whose first is the example of a FUNC() returning its module
    alone."""
    from cp_debug.bisect.subjects.loaders import onnx_subject, torch_subject

    if bool(torch_target) == bool(onnx_path):
        raise BadInputError("give one model: --onnx FILE.onnx or --torch FILE.py:FUNC")
    if onnx_path is not None:
        if not Path(onnx_path).is_file():
            raise BadInputError(f"--onnx file not found: {onnx_path}")
        from cp_debug.bisect.subjects.deployed import refuse_unloadable_given

        subject = onnx_subject(onnx_path, None, seed=seed, seeded=need_feed)  # a broken file: exit 2
        refuse_unloadable_given(onnx_path, backends)  # then the file as ONNX Runtime takes it (exit 3)
        _check_fits(subject, backends)
        return ModuleModel(subject, graph_inputs(subject.stages[0].onnx(), Path(onnx_path).name, onnx_path),
                           {"onnx": str(onnx_path)})
    subject = torch_subject(torch_target, None, exporter=exporter, seed=seed, dynamic=dynamic, shapes=shapes,
                            ranged=ranged, example_at=example_at)
    if len(subject.stages) != 1:
        raise BadInputError(f"{subject.name} has {len(subject.stages)} stages: a sample run takes one graph")
    _check_fits(subject, backends)
    what = f"{str(torch_target).rpartition(':')[2]}()'s model"
    axes = getattr(subject.facts, "dynamic", None)
    return ModuleModel(subject, graph_inputs(subject.stages[0].onnx(), what),
                       {"torch": str(torch_target), "exporter": exporter, **({"dynamic": axes} if axes else {})})


def _check_fits(subject, backends: "Sequence[BackendSpec]") -> None:
    """A model too big for the machine with `backends` (their sessions' copies of the weights): one line, exit 3."""
    from cp_debug.bisect.stages.fits import check_fits, subject_weights

    if backends:
        weights, resident = subject_weights(subject)
        check_fits(weights, backends, resident, doing="run")
