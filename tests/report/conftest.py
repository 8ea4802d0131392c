from __future__ import annotations

import pytest

from cp_debug.bisect.result import BisectReport
from tests.report.sample import build_report


@pytest.fixture
def report() -> BisectReport:
    return build_report()
