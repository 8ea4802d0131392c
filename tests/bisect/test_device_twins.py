"""DeviceTwins: a CUDA reference's second run is found bit-identical on the device, or handed to the host."""

from __future__ import annotations

import pytest
import torch

from cp_debug.bisect.stages.device_twins import DeviceTwins

pytestmark = pytest.mark.gpu


@pytest.fixture
def cuda():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    return torch.device("cuda")


def test_identical_finite_probes_stay_on_the_device_and_others_go_to_the_host(cuda):
    a = torch.linspace(-3, 2, 1000, device=cuda)
    twins = DeviceTwins({"same", "moved", "negzero", "nan", "other_shape"})
    nan = a.clone()
    nan[5] = float("nan")
    for name, t in (("same", a), ("moved", a), ("negzero", torch.zeros(4, device=cuda)), ("nan", nan),
                    ("other_shape", a), ("not_a_probe", a)):
        assert twins.keep(name, t) is False  # always on to the host store too
    a.add_(1.0)  # an in-place op after the hook: the twin is a copy
    assert twins.same("same", torch.linspace(-3, 2, 1000, device=cuda))
    same = twins.identical["same"]
    assert (same.max_abs, same.ref_absmax, same.ref_shape, same.status) == (0.0, 3.0, (1000,), "ok")
    assert not twins.same("moved", torch.linspace(-3, 2, 1000, device=cuda) + 1e-6)
    assert not twins.same("negzero", -torch.zeros(4, device=cuda))  # -0.0 is not the bits of 0.0
    assert not twins.same("nan", nan)  # bit-identical, but a NaN's noise is the host's to describe
    assert not twins.same("other_shape", torch.zeros(10, device=cuda))
    assert not twins.same("not_a_probe", a)  # never kept
    assert set(twins.identical) == {"same"} and twins.used == 0
