"""`--model-factory FILE.py:FUNC`: the user's own modules as the reference. A factory written in another style than
cp_debug's (user_centerpoint.py: other module tree and names, fused blocks, one ModuleDict head) with cp_debug's
tiny weights mapped in bisects under its own module names and equals cp_debug's implementation numerically; each
break of the contract is one line naming the stage and the module."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cp_debug.errors import BadInputError

FACTORY = Path(__file__).with_name("user_centerpoint.py")
SCAN_SEED = 3  # the synthetic scan both subjects run (cp_debug's subject: weights of the same seed)


@pytest.fixture(scope="module")
def subjects():
    from cp_debug.recipes.centerpoint.subject import centerpoint_subject, factory_subject
    from tests.recipes.centerpoint.user_centerpoint import SEED

    ours = factory_subject(f"{FACTORY}:build", seed=SCAN_SEED)
    theirs = centerpoint_subject("tiny", seed=SEED, random_weights=True)  # scan seed = weight seed = 3
    return ours, theirs


def _heads(subject) -> dict[str, np.ndarray]:
    """The subject's two torch stages run with its glue between them: the six head maps."""
    enc, bb = subject.stages
    with torch.no_grad():
        pillars = enc.module(torch.from_numpy(subject.inputs["input_features"]))
        spatial = subject.feed(1, {"pillar_features": pillars.numpy()})["spatial_features"]
        outs = bb.module(torch.from_numpy(spatial))
    return {n: o.numpy() for n, o in zip(bb.output_names, outs)}


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
def test_factory_equals_cp_debug_where_both_describe_the_tiny_network(subjects):
    ours, theirs = subjects
    assert SCAN_SEED == 3
    np.testing.assert_array_equal(ours.inputs["input_features"], theirs.inputs["input_features"])  # same glue
    a, b = _heads(ours), _heads(theirs)
    assert list(a) == ["heatmap", "reg", "height", "dim", "rot", "vel"]
    for name in a:  # BN folded by hand vs BN at run time: fp32 rounding only
        scale = float(np.abs(b[name]).max())
        assert scale > 0.1, name
        assert float(np.abs(a[name] - b[name]).max()) <= 2e-4 * scale, name
    # the modules really are another tree: no name of cp_debug's stage modules is in the factory's
    theirs_names = {n for st in theirs.stages for n, _ in st.module.named_modules() if n}
    ours_names = {n for st in ours.stages for n, _ in st.module.named_modules() if n}
    assert not ours_names & theirs_names and "levels.0.entry.op" in ours_names


def test_factory_bisects_under_its_own_module_names(subjects):
    from cp_debug.backends.spec import NOISE_CHECK, parse_backends
    from cp_debug.bisect.engine import BisectEngine, BisectOptions

    ours, _ = subjects
    pairs = parse_backends("torch,ort", rule=NOISE_CHECK)
    engine = BisectEngine(ours, pairs[0], pairs[1:], BisectOptions(noise_floor=False, local=False, refine=False))
    try:
        report = engine.run()
    finally:
        engine.close()
    names = [p.name for p in report.probes]
    assert names[:2] == ["expand", "squeeze"]
    assert {"levels.0", "levels.2", "lift.2", "trunk", "heads.heatmap", "heads.vel"} <= set(names)
    assert not [n for n in names if n.startswith("pts_")]  # none of cp_debug's names
    cand = report.candidates[0]
    rows = {r.probe: r for r in cand.results}
    assert all(rows[n].status == "ok" for n in names), {n: rows[n].status for n in names if rows[n].status != "ok"}
    # the head's ModuleDict entries stand for the outputs they return (mapped, compared), as cp_debug's heads do
    assert "heatmap" not in names and rows["heads.heatmap"].diff is not None
    assert report.facts.modules == {"pts_voxel_encoder": "PillarNet", "pts_backbone_neck_head": "BevDetector"}


@pytest.mark.parametrize("func, words", [
    ("dict_head", "pts_backbone_neck_head (DictHead) returns a dict (keys heatmap, reg, height, dim, rot, vel), not a "
                  "tuple: the deployed pts_backbone_neck_head gives six tensors in the order heatmap, reg, height, "
                  "dim, rot, vel"),
    ("pair_encoder", "pts_voxel_encoder (PairEncoder) returns a tuple of 2, not a tensor"),
    ("wrong_classes", "pts_backbone_neck_head (BevDetector): output heatmap has shape [1, 5, 20, 20], not "
                      "[1, 3, 20, 20]"),
])
def test_a_broken_contract_is_one_line_naming_stage_and_module(func, words):
    from cp_debug.recipes.centerpoint.subject import factory_subject

    with pytest.raises(BadInputError) as err:
        factory_subject(f"{FACTORY}:{func}")
    assert words in str(err.value) and "\n" not in str(err.value)


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
def test_a_stage_that_does_not_export_is_named():
    from cp_debug.recipes.centerpoint.subject import factory_subject

    subject = factory_subject(f"{FACTORY}:unexportable")  # runs in PyTorch: the checks pass
    subject.stages[0].onnx()
    with pytest.raises(BadInputError, match=r"^pts_backbone_neck_head \(Unexportable\) does not export as the "
                                            r"deployment exports it \(TorchScript exporter, opset 17\): .*cummax"):
        subject.stages[1].onnx()


def test_cli_says_one_line_and_exits_2():
    from tests.cli_run import cpdebug

    def run(*args):
        return cpdebug("bisect", *args)

    proc = run("--model-factory", f"{FACTORY}:dict_head", "--quiet")
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("cpdebug: error:")]
    assert len(lines) == 1 and "returns a dict" in lines[0] and "Traceback" not in proc.stderr
    proc = run("--model-factory", f"{FACTORY}:build", "--checkpoint", FACTORY, "--quiet")
    assert proc.returncode == 2 and "--model-factory builds its own modules and weights: drop --checkpoint" in \
        proc.stderr
