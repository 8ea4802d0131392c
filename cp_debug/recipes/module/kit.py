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
    """The one graph of `req.graph` (`--torch` / `--onnx`), loaded once, on its samples."""
    from cp_debug.kit.graph_kit import graph_content
    from cp_debug.recipes.module.model import load_module_model

    g = req.graph
    if g is None:
        from cp_debug.errors import BadInputError

        raise BadInputError("a kit of any model takes --torch FILE.py:FUNC or --onnx FILE")
    loaded = load_module_model(g.torch, g.onnx, exporter=g.exporter, seed=req.model.seed, need_feed=not g.inputs)
    return graph_content(req, loaded.subject)
