"""The generic module recipe's part of `cpdebug trt-kit` (its `kit` plug-in, recipe_contract/recipe.PLUGINS): the
model loaded as every sample run loads it (`model.py`: `--torch` exported once, `--onnx` as ONNX Runtime takes it),
the kit's content that of any one-graph model (`cp_debug/kit/graph_kit.py`, where the hooks below live)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cp_debug.kit.graph_kit import (BISECT_SUFFIX, DEPLOYED_FILES, LINTS_FIX, bisect_command,  # noqa: F401 (hooks)
                                    check_model, model_config, precisions, readme_text)

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.kit.content import KitContent, KitRequest


def content(req: "KitRequest") -> "KitContent":
    """The one graph of `req.graph` (`--torch` / `--onnx`), loaded once, on its samples; a `--torch` model exported
    dynamic on the axes the range given moves (`--min-shapes` / `--max-shapes`), else on those its samples' shapes
    differ in (or its `dynamic()`'s)."""
    from cp_debug.bisect.subjects.feeds import npz_shapes
    from cp_debug.export.dynamic import of_range
    from cp_debug.kit.graph_kit import graph_content
    from cp_debug.recipes.module.model import load_module_model

    g = req.graph
    if g is None:
        from cp_debug.errors import BadInputError

        raise BadInputError("a kit of any model takes --torch FILE.py:FUNC or --onnx FILE")
    dynamic = {}
    if g.torch:
        lo, hi = g.ranges.get("min") or {}, g.ranges.get("max") or {}
        dynamic = {"shapes": [s for p in g.inputs for s in npz_shapes(p)],
                   "ranged": of_range(lo, {n: hi.get(n, s) for n, s in lo.items()}),
                   "example_at": g.inputs[0] if g.inputs else None}
    loaded = load_module_model(g.torch, g.onnx, exporter=g.exporter, seed=req.model.seed, need_feed=not g.inputs,
                               **dynamic)
    return graph_content(req, loaded.subject)
