"""The calibrated tiny CenterPoint of tests/quant, shared with the workflow tests."""

from __future__ import annotations

from tests.quant.conftest import tiny_fp32, tiny_ptq, tiny_spatial  # noqa: F401
