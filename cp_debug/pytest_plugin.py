"""cp_debug's pytest plugin (entry point `pytest11`, loaded by pytest wherever cp_debug is installed): the `cpdebug`
fixture, the library (`cp_debug.api.library`) for a test, so that a suite gates a model's numerics in one line:

    def test_fp16_deploys(cpdebug):
        cpdebug.assert_within_precision(model, (x,), "ort-cpu-fp16")

A failure's message is the report's summary (each verdict, the root cause and its reason). Nothing heavy is imported
when pytest starts: the fixture hands over the library, which imports torch and ONNX Runtime when a test calls it."""

from __future__ import annotations

import pytest


class CpDebug:
    """What the fixture gives: `bisect` and `assert_within_precision` (`cp_debug.api.library`), imported when
    first called."""

    def bisect(self, model, inputs=None, backends="torch,ort", **options):
        from cp_debug.api.library import bisect

        return bisect(model, inputs, backends, **options)

    def assert_within_precision(self, model, inputs=None, backends="ort-cpu-fp16", **options):
        __tracebackhide__ = True  # the failure shows the test's line and the summary, not the library's frames
        from cp_debug.api.library import assert_within_precision

        return assert_within_precision(model, inputs, backends, **options)


@pytest.fixture
def cpdebug() -> CpDebug:
    """cp_debug for a test: `cpdebug.assert_within_precision(model, inputs, "ort-cpu-fp16")`, `cpdebug.bisect(...)`."""
    return CpDebug()
