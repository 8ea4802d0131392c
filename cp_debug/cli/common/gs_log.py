"""onnx-graphsurgeon's logger, routed into Python logging while a command runs (`_quiet.ThirdParty`).

graphsurgeon does not warn through `warnings` nor `logging`: its `G_LOGGER` prints to stdout (and, on its first
warning, one more line that the `colored` package is missing). On a graph holding float8 tensors it warns "Could not
convert: FLOAT8E4M3FN to a corresponding NumPy type": two `[W]` lines at the head of stdout — in front of the report
of `bisect -b torch,ort-cpu-fp8`, and of its JSON with `--json -`. Routed here, its messages reach the logger
`onnx_graphsurgeon`, which ThirdParty records for the report like any library's. graphsurgeon is imported lazily
in some thirty places, so the route is laid where it is imported (an import hook on its logger module), or at once
where it already is.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import logging
import sys

_MODULE = "onnx_graphsurgeon.logger.logger"


def route() -> "_Finder | None":
    """graphsurgeon's G_LOGGER into logging now where it is imported, else when it is: the finder to `unroute`."""
    if _MODULE in sys.modules:
        _patch(sys.modules[_MODULE])
        return None
    finder = _Finder()
    sys.meta_path.insert(0, finder)
    return finder


def unroute(finder: "_Finder | None") -> None:
    if finder is not None and finder in sys.meta_path:
        sys.meta_path.remove(finder)


def _patch(module) -> None:
    logger = getattr(module, "G_LOGGER", None)
    if logger is None or getattr(logger.log, "_cp_debug", False):
        return
    levels = {module.Logger.WARNING: logging.WARNING, module.Logger.ERROR: logging.ERROR,
              module.Logger.CRITICAL: logging.CRITICAL}

    def log(message, severity, mode=None, stack_depth=2):  # noqa: ARG001 - graphsurgeon's signature
        if severity < max(logger.severity, module.Logger.WARNING):
            return  # its info and verbose lines: what it prints only when asked
        text = str(message() if callable(message) else message)
        logging.getLogger("onnx_graphsurgeon").log(levels.get(severity, logging.WARNING), text)

    log._cp_debug = True
    logger.log = log


class _Finder(importlib.abc.MetaPathFinder):
    """Finds nothing itself: where graphsurgeon's logger module is about to load, wraps its loader so that the
    route is laid once the module has run."""

    def find_spec(self, name, path=None, target=None):
        if name != _MODULE:
            return None
        sys.meta_path.remove(self)  # the real finders find it; this one only wraps their loader
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return None
        exec_module = spec.loader.exec_module

        def run(module):
            exec_module(module)
            _patch(module)

        spec.loader.exec_module = run
        return spec
