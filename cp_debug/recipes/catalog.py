"""The recipes by name: the one place that lists them (each a `Recipe` of recipe_contract/recipe.py, in its folder's
`recipe.py`). The command line finds the run's recipe here (by the name a command, a report or a fix document gives)
and hands the `Recipe` down to the features, which import nothing of this package; none compares a recipe's name. A
fourth recipe is one folder and one line of `_FOLDERS`."""

from __future__ import annotations

import importlib
from functools import cache
from typing import TYPE_CHECKING

from cp_debug.errors import BadInputError

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.recipe_contract.recipe import Recipe

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


def detector(name: str | None = None):
    """The `Detector` (train/detectors.py) `cpdebug train` trains of recipe `name` (None: the default): its `train`
    plug-in's."""
    trainable = [r.name for r in every() if r.has("train")]
    if name is not None and name not in trainable:
        raise BadInputError(f"cannot train recipe {name!r}: choose one of {', '.join(trainable)}")
    return recipe(name).plugin("train").detector()


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
