"""What a bisect run ran, as its report records it (JSON `model`): the kind of model and the facts of that kind.

The subjects make them (`bisect/subjects/loaders.py` for --torch / --onnx, `recipes/centerpoint/subject.py` for the
CenterPoint recipe and --model-factory); `model_facts_from_json` reads a saved report's back (older reports lack
some keys: those read as None). The model as the user named it is the report's `ModelRecord`, beside these.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

# the JSON keys of a recipe run and of a --model-factory run, in the order the report lists them
_RECIPE_KEYS = ("preset", "weights", "points", "checkpoint", "random_weights", "points_file", "seed", "load_dim",
                "use_dim", "point_cloud", "num_points", "num_voxels", "grid")
_FACTORY_KEYS = ("model_factory", "preset", "name", "weights", "points", "points_file", "seed", "load_dim", "use_dim",
                 "modules", "point_cloud", "num_points", "num_voxels", "grid")


@dataclass(frozen=True)
class RecipeFacts:
    """A recipe run (JSON kind "recipe"; the recipe is "centerpoint"): its settings (preset), weights and scan, and
    with --int8 the PTQ checkpoint's facts; a --model-factory run adds the factory, its name and modules.

    Open-ended facts stay their own JSON: `point_cloud` (the point reader's record, `LoadedPoints.info()` and its
    warnings), `int8` (the PTQ checkpoint's facts and its per-layer quantization table, `model.int8.quantization`)
    and `factory` (whatever the user's factory describes)."""

    recipe: str
    preset: str | None
    weights: str | None
    points: str | None  # the scan as named: its file, or what it is ("synthetic scene (seed 0)")
    points_file: str | None  # the point file read; None for a synthetic scan or one held in memory
    seed: int | None
    load_dim: int | None = None
    use_dim: int | tuple[int, ...] | None = None
    point_cloud: dict | None = None
    num_points: int | None = None
    num_voxels: int | None = None
    grid: tuple[int, int] | None = None
    checkpoint: str | None = None
    random_weights: bool | None = None  # None: a report written before it was recorded
    int8: dict | None = None
    model_factory: str | None = None  # --model-factory FILE.py:FUNC; None for the recipe's own model
    name: str | None = None
    modules: dict[str, str] | None = None  # stage -> the factory module's class
    factory: dict | None = None
    post_process: dict | None = None  # the detections' post-process where a recipe reads it from files (--params)

    kind = "recipe"

    @property
    def title(self) -> str:
        """A short name: the factory's name, else the recipe (and preset)."""
        if self.name:
            return self.name
        return f"{self.recipe} ({self.preset})" if self.preset else self.recipe

    def to_json(self) -> dict:
        out: dict = {"kind": self.kind, "recipe": self.recipe}
        factory = self.model_factory is not None
        for key in _FACTORY_KEYS if factory else _RECIPE_KEYS:
            value = getattr(self, key)
            out[key] = list(value) if isinstance(value, tuple) else value
        extra, value = ("factory", self.factory) if factory else ("int8", self.int8)
        if value is not None:
            out[extra] = value
        if self.post_process is not None:
            out["post_process"] = self.post_process
        return out

    @classmethod
    def from_json(cls, d: dict) -> RecipeFacts:
        use_dim, grid = d.get("use_dim"), d.get("grid")
        return cls(d["recipe"], d.get("preset"), d.get("weights"), d.get("points"), d.get("points_file"),
                   d.get("seed"), d.get("load_dim"), tuple(use_dim) if isinstance(use_dim, list) else use_dim,
                   d.get("point_cloud"), d.get("num_points"), d.get("num_voxels"),
                   tuple(grid) if grid is not None else None, d.get("checkpoint"), d.get("random_weights"),
                   d.get("int8"), d.get("model_factory"), d.get("name"), d.get("modules"), d.get("factory"),
                   d.get("post_process"))


@dataclass(frozen=True)
class TorchFacts:
    """A --torch FILE.py:FUNC run: the function, the module's class, the --inputs file, the exporter asked for and the
    inputs' dynamic axes where it has any (`export.dynamic.DynamicAxes.to_json`: the axes and where they were said)."""

    source: str
    class_name: str | None
    inputs: str | None
    exporter: str | None
    dynamic: dict | None = None

    kind = "torch"

    @property
    def title(self) -> str:
        return self.class_name or _file_name(self.source)

    def to_json(self) -> dict:
        return {"kind": self.kind, "source": self.source, "class": self.class_name, "inputs": self.inputs,
                "exporter": self.exporter, **({"dynamic": self.dynamic} if self.dynamic else {})}

    @classmethod
    def from_json(cls, d: dict) -> TorchFacts:
        return cls(d["source"], d.get("class"), d.get("inputs"), d.get("exporter"), d.get("dynamic"))


@dataclass(frozen=True)
class OnnxFacts:
    """An --onnx FILE run: the file, the --inputs file and the seed of the random inputs made without one."""

    source: str
    inputs: str | None
    seed: int | None

    kind = "onnx"

    @property
    def title(self) -> str:
        return _file_name(self.source)

    def to_json(self) -> dict:
        return {"kind": self.kind, "source": self.source, "inputs": self.inputs, "seed": self.seed}

    @classmethod
    def from_json(cls, d: dict) -> OnnxFacts:
        return cls(d["source"], d.get("inputs"), d.get("seed"))


ModelFacts = Union[RecipeFacts, TorchFacts, OnnxFacts]
_KINDS = {c.kind: c for c in (RecipeFacts, TorchFacts, OnnxFacts)}


def model_facts_from_json(d: dict | None) -> ModelFacts | None:
    """The facts of a saved report's `model` ({} or absent: None); ValueError for a kind cp_debug does not write."""
    if not d:
        return None
    kind = d.get("kind")
    if kind not in _KINDS:
        raise ValueError(f"its model is of kind {kind!r}; cp_debug writes {', '.join(map(repr, _KINDS))}")
    return _KINDS[kind].from_json(d)


def _file_name(path: str) -> str:
    return str(path).replace("\\", "/").rsplit("/", 1)[-1]
