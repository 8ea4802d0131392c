"""The recipes by name: the one place that lists them (each a `Recipe` of recipes/contract.py, in its folder's
`recipe.py`). Every feature finds a recipe here by the name a command, a report or a fix document gives, and asks
it; none compares a recipe's name. A fourth recipe is one folder and one line of `_FOLDERS`."""

from __future__ import annotations

import importlib
from functools import cache
from typing import TYPE_CHECKING

from cp_debug.errors import BadInputError

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.bisect.subject import Subject
    from cp_debug.recipes.contract import Recipe
    from cp_debug.recipes.staged import FrameModel

# name → the recipe's folder (its `recipe.py` holds `RECIPE`); the first is the default of a command given none.
_FOLDERS = {
    "centerpoint": "cp_debug.recipes.centerpoint",
    "transfusion": "cp_debug.recipes.transfusion",
    "module": "cp_debug.recipes.module",
}
DEFAULT = "centerpoint"


@cache
def _load(name: str) -> "Recipe":
    return importlib.import_module(f"{_FOLDERS[name]}.recipe").RECIPE


def every() -> tuple["Recipe", ...]:
    """Every registered recipe, the default first."""
    return tuple(_load(name) for name in _FOLDERS)


def built_in() -> tuple[str, ...]:
    """The names `--recipe` takes: the recipes built from a preset or a config file."""
    return tuple(r.name for r in every() if r.preset_config is not None)


def recipe(name: str | None = None) -> "Recipe":
    """The recipe called `name` (None: the default); an unknown name is one line listing the built-in ones."""
    name = DEFAULT if name is None else name
    if name not in _FOLDERS:
        raise BadInputError(f"unknown recipe {name!r}: the built-in recipes are {', '.join(built_in())}")
    return _load(name)


def of_any_model() -> "Recipe":
    """The recipe of a model given as `--torch FILE.py:FUNC` / `--onnx FILE` (sweep, eval and fix over samples):
    the registered recipe that loads one (`Recipe.load_module`)."""
    return next(r for r in every() if r.load_module is not None)


def titles(names) -> list[str]:
    """How messages name the recipes `names`."""
    return [recipe(n).title for n in names]


def fixed_from_reports() -> tuple[str, ...]:
    """The recipes whose bisect reports and sweeps `fix --from-bisect` / `--from-sweep` start from."""
    return tuple(r.name for r in every() if r.fix_from_reports)


def starts_fix_from_reports(name: str) -> bool:
    """Whether a bisect report or sweep of recipe `name` (any name a report holds) can start a fix."""
    return name in _FOLDERS and recipe(name).fix_from_reports


def runs_frame_model(name: str) -> bool:
    """Whether `name`'s frames run through its `FrameModel` (else through its own pipeline)."""
    return recipe(name).runs_frame_model


def model_types(name: str) -> tuple[str, ...]:
    """The `model.type`s of an AWML/mmdet3d config that `name`'s config reader builds (`MODEL_TYPES` beside it)."""
    return recipe(name).model_types()


def recipe_of_config(path) -> str:
    """The recipe that builds the model a `--config` file names, for a command given no `--recipe`: the recipe whose
    reader claims the file's `model.type` (a TransFusion config runs TransFusion-L, not CenterPoint's reader refusing
    it). An autoware-ml YAML config is the default recipe's (its reader is the only one); a config with no
    `model.type` goes to the default recipe's reader, which says what is missing. Reads the file as the reader will
    (mmengine)."""
    if str(path).lower().endswith((".yaml", ".yml")):
        return DEFAULT
    from cp_debug.models.centerpoint.config_file import load_config_dict

    model = load_config_dict(path).get("model")
    kind = model.get("type") if isinstance(model, dict) else None
    if kind is None:
        return DEFAULT
    claims = {name: model_types(name) for name in built_in()}
    found = [name for name, types in claims.items() if kind in types]
    if not found:
        built = "; ".join(f"{', '.join(map(repr, types))} (--recipe {name})" for name, types in claims.items())
        raise BadInputError(f"config {path}: model.type = {kind!r} is built by no recipe of cp_debug; built: {built}")
    return found[0]


def preset_config(name: str, preset: str):
    """The model config of `preset` (a name or a config file) in recipe `name`."""
    return recipe(name).config(preset)


def box_cut(name: str, cfg) -> tuple[float, int | None]:
    """(score threshold, cap): where recipe `name`'s deployment cuts the boxes of model `cfg`."""
    return recipe(name).box_cut(cfg)


def frame_model(name: str, preset: str, checkpoint=None, seed: int = 0, random_weights: bool = False) -> "FrameModel":
    """Recipe `name`'s `FrameModel` of `preset`; one that runs its frames on its own pipeline has none."""
    r = recipe(name)
    if r.frame_model is None:
        raise BadInputError(f"recipe {name!r} runs its frames on its own pipeline")
    return r.frame_model(preset, checkpoint, seed, random_weights)


def frame_subject(name: str, preset: str, *, checkpoint=None, seed: int = 0, random_weights: bool = False,
                  int8=None, points=None, truth=None) -> "Subject":
    """The bisect subject of one frame's scan `points` (a `LoadedPoints`) in recipe `name` (`truth`: its ground
    truth)."""
    r = recipe(name)
    if r.frame_subject is None:
        raise BadInputError(f"the {r.title} recipe has no frames to bisect")
    return r.frame_subject(preset, checkpoint=checkpoint, seed=seed, random_weights=random_weights, int8=int8,
                           points=points, truth=truth)
