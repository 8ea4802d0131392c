"""The small fixed-seed fuzz set (issue 33): damaged inputs of every kind through the commands that read them, in
process, and a few through the real entry point. Every run must end in one `cpdebug: error:` line with exit 2 or
3 (or succeed where the input is in fact fine), with no traceback, nothing half-written and no code of the
user's files run (tests/fuzz/runner.py). The larger campaign is `benchmarks/fuzz_campaign.py`.

Every traceback the campaign found is a case here (its mutation is listed in SMALL_SET), so it stays fixed.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.fuzz.mutations import MARKER_NAME, Seeds, all_cases, options_cases
from tests.fuzz.runner import Runner, summary

# Cases of the fixed set, per kind: mutation names (see tests/fuzz/mutations.py), and the commands each runs
# here (the campaign runs every command that reads the input; these are the ones that answer in seconds).
SMALL_SET = {
    "onnx": ["truncated", "unknown_op", "wrong_opset", "missing_input", "no_outputs", "wrong_input_type"],
    "points": ["partial_rows", "nan_all", "object_npy", "npz_object", "wrong_shape", "complex_dtype",
               "pcd_compressed", "pcd_garbage_header", "pcd_ascii_bad", "a_folder"],
    "checkpoint": ["text", "truncated", "wrong_shape", "not_a_dict", "evil_legacy", "evil_torch_save", "evil_nested"],
    "config": ["syntax_error", "base_loop", "unknown_type", "custom_imports", "model_not_dict", "wrong_value"],
    "report": ["as_written", "truncated", "a_list", "other_schema", "field_type", "value_changed"],
    "bag": ["truncated_db3", "metadata_garbage", "metadata_yaml_tags", "no_storage", "empty_folder"],
    "predictions": ["txt_columns", "txt_words", "pkl_evil", "pkl_structure", "submission_garbage"],
    "options": ["n_negative", "n_huge", "eval_n_huge",
                "backends_unknown", "backends_empty", "level", "preset", "use_dim", "out_is_file",
                "out_under_file", "json_missing_dir", "points_missing", "scenes_missing", "shard_size",
                "replay_max_voxels", "replay_nothing", "int8_missing", "fix_check_not_fix", "infer_device"],
}  # environment switches (each a whole bisect) run in the campaign only: they found nothing, and the suite has 10 min
FAST = {"onnx": ("infer", "keep-fp32"), "points": ("infer",), "checkpoint": ("infer", "bisect"),
        "config": ("infer", "scenes"), "report": ("report", "fix"), "bag": ("replay",),
        "predictions": ("replay", "eval")}


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory):
    from typer.testing import CliRunner

    from cp_debug.cli.main import app

    root = tmp_path_factory.mktemp("fuzz")

    def invoke(argv):
        return CliRunner().invoke(app, list(argv), catch_exceptions=False).exit_code

    seeds = Seeds.build(root / "seeds", invoke)
    return seeds, root, invoke


def _fast(case):
    keep = FAST.get(case.kind)
    cmds = tuple(c for c in case.commands if keep is None or c[0] in keep)
    # bisect on a checkpoint only through --int8 (the torch bisect is the same reader as infer's, and slower)
    cmds = tuple(c for c in cmds if not (case.kind == "checkpoint" and c[0] == "bisect" and "--int8" not in c))
    return cmds


@pytest.mark.slow
def test_the_small_fixed_set_ends_in_one_line_each(fuzz):
    seeds, root, invoke = fuzz
    rng = np.random.default_rng(0)
    cases = all_cases(seeds, root / "cases", rng, invoke, kinds=tuple(SMALL_SET), names=SMALL_SET)
    runner = Runner(root / "runs", seeds.marker, timeout_s=120)
    outcomes = []
    for case in cases:
        for argv in _fast(case):
            outcomes.append(runner.run_one(case, argv))
    assert {o.case.name for o in outcomes} == {c.name for c in cases}
    assert {c.name.split("/")[1] for c in cases} >= {n for names in SMALL_SET.values() for n in names}
    assert not [o for o in outcomes if o.failed], summary(outcomes)
    assert not seeds.marker.exists()
    from cp_debug.files import umask

    for f in seeds.onnx.iterdir():  # `cpdebug export` writes its files with a plain open()'s mode (once 0600)
        assert f.stat().st_mode & 0o777 == 0o666 & ~umask(), f
    # the set is not vacuous: most of it is refused, and refused in one line
    assert sum(o.code == 2 for o in outcomes) >= len(outcomes) // 2


def test_the_real_entry_point_ends_in_one_line(fuzz):
    """A fresh `python -m cp_debug.cli.main`: what a user's shell sees, for a damaged input of three kinds."""
    seeds, root, invoke = fuzz
    rng = np.random.default_rng(1)
    cases = all_cases(seeds, root / "entry", rng, invoke, kinds=("points", "checkpoint", "bag"),
                      names={"points": ["partial_rows"], "checkpoint": ["evil_legacy"], "bag": ["metadata_garbage"]})
    cases += options_cases(seeds, root / "entry", rng, names=["backends_unknown"])
    runner = Runner(root / "entry-runs", seeds.marker, timeout_s=120)
    outcomes = [runner.run_one(c, _fast(c)[0], subprocess_entry=True) for c in cases]
    assert not [o for o in outcomes if o.failed], summary(outcomes)
    assert [o.code for o in outcomes] == [2, 2, 2, 2]
    assert all(o.stderr.rstrip("\n").splitlines()[-1].startswith("cpdebug: error: ") for o in outcomes)
    assert not (root / "seeds" / MARKER_NAME).exists()
