"""TensorRT optimization profiles: one (min, opt, max) shape per input, for every dynamic axis of a graph.

The CenterPoint pair has dynamic axes (`num_voxels`, `num_max_points`; `batch_size`, `height`, `width`). A TensorRT
engine built without a profile for them cannot run (Polygraphy then fixes each dynamic axis to 1, and the first real
frame is rejected). The profile comes from the frames being run (min/max over their feeds, opt the most common
shape's largest) widened by caps the deployment sets (`max_voxels` of the deploy config: the engine must take the
largest frame the car can send, not only the ones at hand). The TensorRT runner and the kit's trtexec commands take
it from here, so both build the same engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from cp_debug.errors import BadInputError


@dataclass(frozen=True)
class ShapeRange:
    """The shapes one input takes: TensorRT's kMIN / kOPT / kMAX."""

    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    def to_json(self) -> dict:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}


Profile = dict[str, ShapeRange]  # input name -> its range; inputs of fixed shape have min == opt == max


def profile_from_shapes(shapes: Sequence[Mapping[str, Sequence[int]]],
                        caps: Mapping[str, Mapping[int, int]] | None = None) -> Profile:
    """The profile covering every feed's shapes (`shapes`: one {input: shape} per frame, the same inputs each).

    min and max are taken axis by axis over the frames; opt is the largest frame's shape (what a deployment runs
    most: full frames). `caps` ({input: {axis: size}}) raises an axis's max to a deployment's limit (e.g.
    {"input_features": {0: max_voxels}}), never lowers it below a frame at hand.
    """
    if not shapes:
        raise BadInputError("an optimization profile needs the shapes of at least one frame")
    names = list(shapes[0])
    for i, s in enumerate(shapes):
        if set(s) != set(names):
            raise BadInputError(f"frame {i} feeds {sorted(s)}, frame 0 feeds {sorted(names)}: one profile cannot "
                                "cover both")
    prof: Profile = {}
    for name in names:
        dims = [tuple(int(d) for d in s[name]) for s in shapes]
        rank = {len(d) for d in dims}
        if len(rank) != 1:
            raise BadInputError(f"input {name!r} changes rank between frames ({sorted(rank)}): one profile cannot "
                                "cover it")
        lo = tuple(min(d[a] for d in dims) for a in range(len(dims[0])))
        hi = list(max(d[a] for d in dims) for a in range(len(dims[0])))
        for axis, size in (caps or {}).get(name, {}).items():
            if not 0 <= axis < len(hi):
                raise BadInputError(f"a cap on axis {axis} of {name!r}, which has {len(hi)} axes")
            hi[axis] = max(hi[axis], int(size))
        opt = max(dims, key=lambda d: (_numel(d), d))
        prof[name] = ShapeRange(lo, opt, tuple(hi))
    return prof


def shape_text(shape: Sequence[int]) -> str:
    """A shape as trtexec writes it: `1x32x512x512`."""
    return "x".join(str(int(d)) for d in shape)


def trtexec_shape_flags(profile: Profile) -> list[str]:
    """`--minShapes=… --optShapes=… --maxShapes=…` for trtexec's build (inputs in the profile's order).

    trtexec takes `name:AxBxC` pairs joined by commas; a name holding a comma or colon cannot be written there.
    """
    for name in profile:
        if "," in name or ":" in name:
            raise BadInputError(f"input {name!r} holds ',' or ':', which trtexec's --minShapes cannot carry")
    return [f"--{key}Shapes=" + ",".join(f"{n}:{shape_text(getattr(r, key))}" for n, r in profile.items())
            for key in ("min", "opt", "max")]


def given_profile(derived: Profile, given: Mapping[str, Mapping[str, Sequence[int]]],
                  declared: Mapping[str, Sequence[int | None]]) -> Profile:
    """The profile `derived` from the samples, with the ranges `given` ("min" / "opt" / "max" -> input -> shape:
    `--min-shapes` …) in place of theirs. An input given takes min and max together (opt: the samples' opt where it
    lies within them, else max); each shape has the rank and the fixed dims the graph `declared` (None: a dynamic
    axis), and min <= opt <= max axis by axis. Every sample is then checked to lie within (`check_within`)."""
    named = {n for shapes in given.values() for n in shapes}
    unknown = sorted(named - set(derived))
    if unknown:
        raise BadInputError(f"--min/--opt/--max-shapes name {', '.join(map(repr, unknown))}: the graph's inputs are "
                            f"{', '.join(map(repr, derived))}")
    prof = dict(derived)
    for name in sorted(named, key=list(derived).index):
        lo, hi = given.get("min", {}).get(name), given.get("max", {}).get(name)
        if lo is None or hi is None:
            raise BadInputError(f"--min-shapes and --max-shapes give {name!r} together (one of them lacks it)")
        lo, hi = tuple(int(d) for d in lo), tuple(int(d) for d in hi)
        opt = given.get("opt", {}).get(name)
        if opt is None:
            s = derived[name].opt
            opt = s if len(s) == len(lo) and all(a <= d <= b for d, a, b in zip(s, lo, hi)) else hi
        opt = tuple(int(d) for d in opt)
        dims = tuple(declared.get(name, ()))
        for key, shape in (("min", lo), ("opt", opt), ("max", hi)):
            if len(shape) != len(dims):
                raise BadInputError(f"--{key}-shapes {name}:{shape_text(shape)} has {len(shape)} axes; the graph's "
                                    f"input {name!r} has {len(dims)}")
            fixed = [a for a, (d, g) in enumerate(zip(shape, dims)) if g is not None and d != g]
            if fixed:
                a = fixed[0]
                raise BadInputError(f"--{key}-shapes {name}:{shape_text(shape)}: axis {a} of {name!r} is fixed at "
                                    f"{dims[a]} in the graph (a range needs a graph exported with that axis dynamic)")
        if not all(a <= b <= c for a, b, c in zip(lo, opt, hi)):
            raise BadInputError(f"{name!r}: min {shape_text(lo)}, opt {shape_text(opt)}, max {shape_text(hi)}: "
                                "TensorRT needs min <= opt <= max on every axis")
        prof[name] = ShapeRange(lo, opt, hi)
    return prof


def _numel(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def check_within(profile: Profile, shapes: Mapping[str, Sequence[int]], what: str = "the engine") -> None:
    """A BadInputError, in one line, where a feed's shapes (`shapes`: {input: shape}) leave `profile`: an engine
    runs only the shapes its optimization profile covers."""
    for name, shape in shapes.items():
        r = profile.get(name)
        if r is None:
            continue
        s = tuple(int(d) for d in shape)
        if len(s) != len(r.min) or any(not lo <= d <= hi for d, lo, hi in zip(s, r.min, r.max)):
            raise BadInputError(f"input {name!r} has shape {shape_text(s)}, outside {what}'s optimization profile "
                                f"(min {shape_text(r.min)}, max {shape_text(r.max)}): build it with a profile "
                                "covering every frame to be run (a larger cap)")
