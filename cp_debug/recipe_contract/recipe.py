"""What a recipe is: the one contract CenterPoint, TransFusion-L and the generic module recipe keep, and a fourth
keeps by writing one folder (`recipes/<name>/`, its `Recipe` in `recipe.py`, one line in `recipes/catalog.py`).

A `Recipe` says how its model is loaded (presets, the config `model.type`s its reader builds), what its frames are
and how one frame becomes a bisect subject or a `FrameModel` (`frame_model.py`), where its deployment cuts boxes,
and which features it plugs into. The command line resolves the run's recipe (`recipes/catalog.py`) and hands it
down to the features (fix, kit, sweep, eval, train, …), which find its part of them in its folder, in a module named
after the feature (`recipes/transfusion/fix.py`), through `Recipe.plugin(feature)`: the feature defines what that
module provides (its hook), the recipe folder implements it, and no feature names or imports a recipe. Building a
`Recipe` loads nothing: every hook imports what it needs when called.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable, Optional

from cp_debug.errors import BadInputError

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.bisect.subjects.subject import Subject
    from cp_debug.recipe_contract.frame_model import FrameModel

# The features whose part of a recipe is a module of the recipe's folder (`recipes/<name>/<feature>.py`), each
# with the hook the feature calls (the feature's docstring of that hook is the contract; tests/recipes/test_contract.py
# checks every registered recipe's modules have them).
PLUGINS: dict[str, tuple[str, ...]] = {
    "eval": ("run_backends",),  # its frames on a pipeline of its own (eval/__init__.py)
    "fix": ("needs_devkit", "check_request", "run_fix", "check_fix"),
    "kit": ("DEPLOYED_FILES", "LINTS_FIX", "BISECT_SUFFIX", "model_config", "check_model", "precisions", "content",
            "bisect_command", "readme_text"),
    "lint": ("model_config", "lint"),
    "replay": ("stage_runners", "run_scan", "decode", "compare_detections", "AUTOWARE_NODE"),
    "sweep": ("subject", "stage_bytes", "with_stages", "make_worker"),  # its own lanes (sweep/__init__.py)
    "train": ("detector",),
    # `cpdebug quantize` / `cpdebug sensitivity`: the feature has no package of its own (its commands call these;
    # CenterPoint's package recipes/centerpoint/ptq/ says what each takes and gives)
    "ptq": ("PtqSettings", "calibrate_model", "write_ptq_dir", "held_out_evaluator", "layer_sensitivity",
            "exclusion_search"),
    "bench": ("STAGES", "BackendPipeline", "int8_calibration"),  # the rows `cpdebug bench` times of the recipe's
    # pipeline (bench/latency.py), the pipeline of one backend and its INT8 calibration feeds (bench/run.py)
}


@dataclass(frozen=True, eq=False)
class Recipe:
    """One kind of model, as every feature sees it. Hooks that a recipe lacks are None (the module recipe builds
    from `--torch` / `--onnx`, not from a preset, and runs no frames). One object per recipe (the catalog's): equal
    only to itself."""

    name: str  # what `--recipe` takes and what reports record
    title: str  # how messages name it: "CenterPoint", "TransFusion-L"
    package: str  # the recipe's folder as a package: its plug-in modules are `package.<feature>`
    plugins: frozenset[str] = frozenset()  # the features of PLUGINS this recipe's folder has a module for
    model_types: Callable[[], tuple[str, ...]] = lambda: ()  # config `model.type`s its reader builds
    preset_config: Optional[Callable[[str], Any]] = None  # preset name or config file → the model config
    check_model: Optional[Callable[[Any], None]] = None  # a ModelRecord's preset checked before torch loads
    box_cut: Optional[Callable[[Any], tuple[float, int | None]]] = None  # cfg → (score threshold, cap) deployed
    frame_model: Optional[Callable[..., "FrameModel"]] = None  # (preset, checkpoint, seed, random_weights): a
    # FrameModel; None where its frames run on a pipeline of its own (CenterPoint's lanes)
    frame_subject: Optional[Callable[..., "Subject"]] = None  # one frame's bisect subject (`make_frame_subject`)
    bisect_subject: Optional[Callable[..., "Subject"]] = None  # (ModelRecord, *, points, load_dim, use_dim, params):
    # `cpdebug bisect`'s subject (and extract's, of a report)
    check_bisect: Optional[Callable[..., None]] = None  # (ModelRecord, [(label, BackendSpec)]): what its bisect
    # does not take, said before the model loads
    load_model: Optional[Callable[[Any], Any]] = None  # ModelRecord → the loaded model (`.model`, `.cfg`, `.weights`)
    load_module: Optional[Callable[..., Any]] = None  # (torch_target, onnx_path, *, exporter, seed, need_feed) →
    # a one-graph model given as `--torch FILE.py:FUNC` / `--onnx FILE` (`ModuleModel`): the sample runs' model
    weights_label: Optional[Callable[[Any], str]] = None  # ModelRecord → what load_model will load, in words (for
    # progress lines before the model is built)
    export_files: Optional[Callable[..., tuple]] = None  # (loaded, out, *, sample_points, rot_y_axis_reference): its
    # deployment's ONNX files written into `out`, their paths in stage order (`cpdebug export`)
    infer_scan: Optional[Callable[..., tuple]] = None  # (loaded, points, device) → (the outputs by name, the
    # Detections, the run's timings, what the summary line says beside the boxes): one scan run end to end in torch
    # (`cpdebug infer`); None: its stages run one by one with a backend each (`infer_stages`)
    infer_stages: Optional[Callable[..., tuple]] = None  # (cfg, points, load, *, encoder, backbone, onnx_dir,
    # device, rot_y, progress, quiet) → (the model `load()` built, head maps by name, Detections, stage seconds): one
    # scan through its stages, each on "torch" or "ort" (`cpdebug infer` of CenterPoint's pair)
    default_preset: str = ""  # the preset a command given neither --preset nor --config runs
    graph_files: tuple[str, ...] = ()  # the ONNX files of its deployment, in stage order
    head_outputs: tuple[str, ...] = ()  # its last graph's outputs by name, the head maps (what a `--budget`'s
    # `max_head_error` limits; each one's rel. RMSE per frame)
    sweep_level: str = "block"  # the probe level a sweep takes when given none
    keep_fp32_is_fix: bool = False  # `keep-fp32` of it is its fix's search (one graph judged as fix judges it)
    refuses: dict[str, tuple[str, ...]] = field(default_factory=dict)  # command → the options (flags) of the
    # default recipe it does not take (cli/common/preflight.refuse_options says so in one line)
    fix_from_reports: bool = False  # a bisect report (its `RecipeFacts`) or a sweep of it can start a fix

    def plugin(self, feature: str, command: str | None = None) -> ModuleType:
        """This recipe's module for `feature` (`recipes/<name>/<feature>.py`, or that package), imported now; a
        recipe without one is one line, naming `command` (the command that asked; default: the feature)."""
        if feature not in PLUGINS:
            raise KeyError(f"no recipe plug-in feature {feature!r} (recipe_contract/recipe.PLUGINS)")
        if feature not in self.plugins:
            raise BadInputError(f"{command or feature} does not run the {self.title} recipe")
        return importlib.import_module(f"{self.package}.{feature}")

    def __reduce__(self):
        """Pickled as its folder (a sweep's settings travel to Ray actors): the same object on the other side."""
        return (_registered, (self.package,))

    def has(self, feature: str) -> bool:
        """Whether this recipe plugs into `feature`."""
        return feature in self.plugins

    @property
    def runs_frame_model(self) -> bool:
        """Whether its frames run through its `FrameModel` (sweep's staged lanes, eval's staged pipeline)."""
        return self.frame_model is not None

    def config(self, preset: str):
        """The model config of `preset` (a name or a config file)."""
        if self.preset_config is None:
            raise BadInputError(f"the {self.title} recipe has no presets")
        return self.preset_config(preset)

    def make_frame_model(self, preset: str, checkpoint=None, seed: int = 0,
                         random_weights: bool = False) -> "FrameModel":
        """Its `FrameModel` of `preset`; a recipe that runs its frames on its own pipeline has none."""
        if self.frame_model is None:
            raise BadInputError(f"recipe {self.name!r} runs its frames on its own pipeline")
        return self.frame_model(preset, checkpoint, seed, random_weights)

    def make_frame_subject(self, preset: str, *, checkpoint=None, seed: int = 0, random_weights: bool = False,
                           int8=None, points=None, truth=None) -> "Subject":
        """The bisect subject of one frame's scan `points` (a `LoadedPoints`) of `preset` (`truth`: its ground
        truth)."""
        if self.frame_subject is None:
            raise BadInputError(f"the {self.title} recipe has no frames to bisect")
        return self.frame_subject(preset, checkpoint=checkpoint, seed=seed, random_weights=random_weights, int8=int8,
                                  points=points, truth=truth)


def _registered(package: str) -> Recipe:
    """The `Recipe` of the folder `package` (its `recipe.py`'s `RECIPE`): how a pickled recipe comes back."""
    return importlib.import_module(f"{package}.recipe").RECIPE
