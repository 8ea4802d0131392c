"""`fix --from-bisect`: a real `cpdebug bisect --json` report gives the model, the candidate and the root-cause
path, and the FP16 candidates of that path are ranked first; without it the planted overflow leads."""

from __future__ import annotations

import pytest

from cp_debug.recipes import catalog
from cp_debug.errors import BadInputError
from tests.cli_run import cpdebug
from tests.fix.planted import PLANTED_NODE, planted_checkpoint

CP = catalog.recipe()  # the default recipe, CenterPoint: its bisect reports start a fix

pytestmark = pytest.mark.slow


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
def test_request_and_ranking_from_a_bisect_report(tmp_path):
    import onnx

    from cp_debug.recipes.centerpoint.fix.fp16 import fp16_candidates
    from cp_debug.data.frames import HeldOutSet
    from cp_debug.fix.names import node_modules
    from cp_debug.fix.run import request_from_bisect
    from cp_debug.fix.targets import FixTarget
    from cp_debug.models.centerpoint.presets import get_preset
    from cp_debug.recipes.centerpoint.export import export_onnx
    from cp_debug.models.centerpoint.source import load_model

    ckpt = planted_checkpoint(tmp_path / "planted.pth")
    report = tmp_path / "bisect.json"
    proc = cpdebug("bisect", "--preset", "tiny", "--checkpoint", ckpt, "--backends", "torch,ort-cpu-fp16", "--json",
                   report, "-q")
    assert proc.returncode in (0, 1, 4), proc.stderr
    req = request_from_bisect(report, (CP,), recipe=CP, target=FixTarget(tol=0.05), scenes=1)
    assert (req.model.preset, req.model.checkpoint, req.candidate, req.reference) == ("tiny", str(ckpt), "ort-cpu-fp16",
                                                                                        "torch")
    assert req.source["from"] == "bisect" and req.first_modules and req.first_modules[0] == req.source["root_cause"]
    assert req.scenes == 1 and req.target.tol == 0.05  # overrides win

    cfg = get_preset("tiny")
    model = load_model("tiny", ckpt).model
    res = export_onnx(model, cfg, tmp_path / "onnx")
    models = {p.name: onnx.load(str(p)) for p in (res.voxel_encoder, res.backbone)}
    names = {n for n, _ in model.named_modules()}
    frames = HeldOutSet.load(cfg, 1)
    plain = fp16_candidates(cfg, models, frames, [0], module_names=names)
    assert plain[0] == PLANTED_NODE  # the node touching the largest |x| (beyond FP16's range) leads
    blamed = fp16_candidates(cfg, models, frames, [0], req.first_modules, names)
    modules = node_modules(models, names)
    k = sum(1 for key in plain if any(str(modules[key]).startswith(b) for b in req.first_modules))
    assert k >= 1 and all(any(str(modules[key]).startswith(b) for b in req.first_modules) for key in blamed[:k])
    assert sorted(blamed) == sorted(plain)


def test_a_report_without_a_fixable_candidate_is_refused(tmp_path):
    from cp_debug.fix.run import request_from_bisect

    bad = tmp_path / "r.json"
    bad.write_text('{"schema": "nope"}')
    with pytest.raises(BadInputError, match="not a cp_debug report"):
        request_from_bisect(bad, (CP,), recipe=CP)


def test_the_request_carries_the_reports_model_record_and_the_users_options_win(tmp_path):
    """The model is the report's ModelRecord, whole (a config file stays a config file, not its stem as a preset);
    a model option given on the command line replaces its field, a config file the preset and back."""
    import json

    from cp_debug.bisect.subjects.model_facts import RecipeFacts
    from cp_debug.bisect.result import BisectReport, CandidateResult
    from cp_debug.fix.run import request_from_bisect
    from cp_debug.fix.targets import FixTarget
    from cp_debug.models.centerpoint.presets import preset_config_path
    from cp_debug.lidar.record import ModelRecord

    shipped = str(preset_config_path("tiny"))
    record = ModelRecord.of(config=shipped, checkpoint="w.pth", seed=4)
    facts = RecipeFacts("centerpoint", "tiny", None, None, None, 4)
    report = BisectReport("torch", [CandidateResult("fp16", "ort-cpu-fp16", [])], [], facts=facts, model=record)
    path = tmp_path / "bisect.json"
    path.write_text(json.dumps(report.to_json()))
    target = FixTarget(tol=0.05)

    def request(**given):
        return request_from_bisect(path, (CP,), recipe=CP, target=target, **given)

    assert request().model == record
    assert request(seed=7).model == ModelRecord.of(config=shipped, checkpoint="w.pth", seed=7)
    assert request(preset="demo").model == ModelRecord.of("demo", checkpoint="w.pth", seed=4)
    # a report from before the record: the model from its facts' recipe fields
    old = {**report.to_json(), "model_record": None,
           "model": {"kind": "recipe", "recipe": "centerpoint", "preset": "tiny", "seed": 4}}
    path.write_text(json.dumps(old))
    assert request().model == ModelRecord.of("tiny", seed=4)
