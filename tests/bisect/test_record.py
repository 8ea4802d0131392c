"""Recording a candidate: the precision verdict merged over stages, the plot arrays kept per probe."""

from __future__ import annotations

import numpy as np

from cp_debug.backends.base import PrecisionReport
from cp_debug.backends.spec import BackendSpec
from cp_debug.bisect.stages.record import keep_plot, merge_precision
from cp_debug.bisect.run_state import CandidateState
from cp_debug.compare.diff import default_tolerance
from cp_debug.compare.plot_data import HostPlots, error_heatmap, error_histogram


def _state() -> CandidateState:
    spec = BackendSpec.parse("ort-cpu-fp16")
    return CandidateState("ort-cpu-fp16", spec, default_tolerance("fp16"))


def test_one_stage_that_ran_another_precision_makes_the_whole_verdict_not_honest():
    s = _state()
    merge_precision(s, "encoder", PrecisionReport("fp16", "fp16"))
    assert s.precision == PrecisionReport("fp16", "fp16") and s.precision.honest
    merge_precision(s, "backbone", PrecisionReport("fp16", "fp32", ("12 of 12 Conv nodes ran in float32",)))
    assert s.precision.effective == "fp32" and not s.precision.honest
    assert s.precision.notes == ("backbone: 12 of 12 Conv nodes ran in float32",)
    merge_precision(s, "head", PrecisionReport("fp16", "mixed", ("2 of 4 Conv nodes ran in float32",)))
    merge_precision(s, "head", PrecisionReport("fp16", "mixed", ("2 of 4 Conv nodes ran in float32",)))
    assert s.precision.effective == "mixed" and len(s.precision.notes) == 2  # a note repeated is kept once
    assert s.precision.to_json() == {"requested": "fp16", "effective": "mixed", "notes": list(s.precision.notes)}


def test_plots_are_kept_typed_with_a_heat_map_only_for_image_like_tensors():
    s = _state()
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(1, 2, 16, 16)).astype(np.float32)
    keep_plot(s, "image", ref, ref + 1e-3)
    keep_plot(s, "vector", ref.reshape(-1), ref.reshape(-1) + 1e-3)
    image, vector = s.plots["image"], s.plots["vector"]
    assert isinstance(image, HostPlots) and image.heatmap is not None and vector.heatmap is None
    assert image.has_heatmap and not vector.has_heatmap
    # drawn when asked, from the material kept: the plots of the values themselves
    assert image.histogram == error_histogram(ref, ref + 1e-3, probe="image")
    assert image.heatmap == error_heatmap(ref, ref + 1e-3, probe="image")
    assert image.histogram["probe"] == "image" and image.heatmap["probe"] == "image"
    assert list(image.to_json()) == ["histogram", "heatmap"] and list(vector.to_json()) == ["histogram"]


def test_a_stage_run_again_says_each_kind_of_note_once_the_latest():
    """A refinement pass runs a stage again and its ONNX Runtime says the same with other counts: one note of each
    kind is kept (the latest), so a hint carries one preamble, not three (issue 84's MobileNetV2 INT8)."""
    s = _state()
    for ran, unfused in ((27, 10), (35, 2), (34, 3)):
        merge_precision(s, "mnet", PrecisionReport("int8", "mixed", (
            f"ORT CPU ran {ran} of 52 Conv nodes as int8 kernels",
            f"exposing probes kept ORT from fusing {unfused} of 37 int8 kernels")))
    assert s.precision.notes == ("mnet: ORT CPU ran 34 of 52 Conv nodes as int8 kernels",
                                 "mnet: exposing probes kept ORT from fusing 3 of 37 int8 kernels")
    merge_precision(s, "head", PrecisionReport("int8", "mixed", ("ORT CPU ran 4 of 8 Conv nodes as int8 kernels",)))
    assert len(s.precision.notes) == 3  # another stage's note is another note


def test_plots_drawn_late_are_those_of_the_values_sampled_non_finite_and_one_array_alike():
    """Issue 118: a probe's plots are drawn from the material kept while its values lived, equal key for key to the
    plots of the values (a sampled tensor, a NaN, float16, a run bit-identical to the reference)."""
    s = _state()
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(2, 3, 200, 130)).astype(np.float16)
    test = ref + np.float16(1e-2)
    test[0, 1, 5, 7] = np.nan
    keep_plot(s, "big", ref, test)
    keep_plot(s, "same", ref, ref)
    for name, t in (("big", test), ("same", ref)):
        kept = s.plots[name]
        assert kept.to_json() == {"histogram": error_histogram(ref, t, probe=name),
                                  "heatmap": error_heatmap(ref, t, probe=name)}
    assert s.plots["big"].histogram["every"] > 1 and s.plots["big"].heatmap["nonfinite_cells"] == 1
    before = s.plots["big"].to_json()
    test[:] = 0  # the material is the plot's own: the values may be let go or reused
    assert s.plots["big"].to_json() == before
