"""The kit's scripts against TensorRT's and Polygraphy's own sources (issue 45, item 4): every trtexec and polygraphy
call `run_trtexec.sh` / `run_polygraphy.sh` make, at every version their own gates admit, holds only options those
versions parse — checked against the lists `benchmarks/trt_sources.py` read out of NVIDIA/TensorRT's
`samples/common/sampleOptions.cpp` (release tags v10.0.0 ... v11.1) and out of each polygraphy version's argument
groups (0.49.9 ... 0.53.6); see `source_lists.py` for how a call is checked.

The scripts are written for a small manifest (no model runs) and run under bash with fake tools that answer as each
version and record their arguments; nothing of TensorRT runs here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cp_debug.backends.kit import kit_files as kf
from cp_debug.kit import scripts
from cp_debug.recipes import catalog
from tests.kit import source_lists as sl

PRECISIONS = ("fp16", "int8")


def _kit():
    """The `kit` plug-in of the default recipe (the one `small_manifest`'s kit was written for)."""
    return catalog.recipe().plugin("kit")


def small_manifest() -> kf.Manifest:
    """Two stages and two frames, names as the deployed pair's; an output of 4000 elements (a share of 1e-2 is 40
    of them)."""
    from cp_debug.compare.diff import default_tolerance

    frames = tuple(kf.KitFrame(kf.frame_id(i), f"scan{i}", "a point file", f"frames/{kf.frame_id(i)}.npy")
                   for i in range(2))
    ids = [f.id for f in frames]

    def t(name, *shapes):
        return kf.KitTensor(name, "float32", dict(zip(ids, shapes)))

    enc = kf.KitStage("pts_voxel_encoder", (t("input_features", (120, 32, 11), (131, 32, 11)),),
                      (t("pillar_features", (120, 1, 32), (131, 1, 32)),))
    head = kf.KitStage("pts_backbone_neck_head", (t("spatial_features", (1, 32, 64, 64), (1, 32, 64, 64)),),
                       (t("heatmap", (1, 10, 20, 20), (1, 10, 20, 20)), t("reg", (1, 2, 64, 64), (1, 2, 64, 64))))
    profile = {"pts_voxel_encoder": {"input_features": {"min": [120, 32, 11], "opt": [131, 32, 11],
                                                        "max": [12000, 32, 11]}},
               "pts_backbone_neck_head": {"spatial_features": {"min": [1, 32, 64, 64], "opt": [1, 32, 64, 64],
                                                               "max": [1, 32, 64, 64]}}}
    tol = {p: {"atol": d.atol, "rtol": d.rtol, "max_share": d.max_share}
           for p in PRECISIONS for d in [default_tolerance(p)]}
    return kf.Manifest("test", "2026-01-01T00:00:00+00:00", {}, {"kind": "export", "path": None}, "fp32", PRECISIONS,
                       frames, (enc, head), profile, tol, {})


def write_scripts(folder: Path, m: kf.Manifest, *, trtexec: str | None = None, polygraphy: str | None = None) -> Path:
    """The kit's two scripts for `m` in `folder` (texts given: planted ones), with the files they hash."""
    folder.mkdir(parents=True, exist_ok=True)
    kit = _kit()
    (folder / kf.TRTEXEC_SCRIPT).write_text(trtexec if trtexec is not None else scripts.trtexec_script(m, kit))
    poly = polygraphy if polygraphy is not None else scripts.polygraphy_script(m, kit)
    (folder / kf.POLYGRAPHY_SCRIPT).write_text(poly)
    for p in m.precisions:
        for rel in m.ran_files(p):
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_bytes(b"\0")
    return folder


@pytest.fixture(scope="module")
def lists():
    trtexec, polygraphy = sl.trtexec_lists(), sl.polygraphy_lists()
    assert trtexec and polygraphy, "tests/data/trt_sources is empty: run benchmarks/trt_sources.py"
    return trtexec, polygraphy


def check_trtexec(kit: Path, trtexec: list[sl.TrtexecList], tools: Path) -> tuple[list[str], set[str]]:
    """(problems, every flag passed): run_trtexec.sh run at each tag's version (its banner) and, with no banner, with
    --trt-major 10 / 11 (the script then assumes 10.0 / 11.0); every call checked against the list of that version.
    Both precisions where the reference check runs (their tolerances differ), one elsewhere (the same flags)."""
    by_version = {t.version: t for t in trtexec}
    runs = [(str(t.version), [], t) for t in trtexec]
    runs += [("", ["--trt-major", "10"], by_version[100000]), ("", ["--trt-major", "11"], by_version[110000])]
    problems, passed = [], set()
    for banner, extra, listed in runs:
        for p in PRECISIONS if listed.version >= scripts.REF_OUTPUTS_FROM else PRECISIONS[:1]:
            ran = sl.run_with_fakes(kit / kf.TRTEXEC_SCRIPT, [p, *extra], tools, kit / ".calls", trt_version=banner)
            if ran.returncode != 0:
                problems.append(f"run_trtexec.sh {p} at {listed.tag}: exit {ran.returncode}: {ran.stderr.strip()}")
            for call in ran.calls:
                passed.update(a.partition("=")[0] for a in call)
                problems += sl.trtexec_problems(call, listed)
    return problems, passed


def check_polygraphy(kit: Path, polygraphy: dict, tools: Path) -> tuple[list[str], set[str]]:
    """(problems, every flag passed): run_polygraphy.sh with each polygraphy version, --trt (TensorRT 10 and 11) and
    --onnxrt; a version the script refuses must be refused in one line with exit 2."""
    problems, passed = [], set()
    for version, listed in polygraphy.items():
        for extra in (["--trt-major", "10"], ["--trt-major", "11"], ["--onnxrt"]):
            ran = sl.run_with_fakes(kit / kf.POLYGRAPHY_SCRIPT, ["fp16", *extra], tools, kit / ".calls",
                                    polygraphy_version=version)
            if ran.returncode == 2 and "--onnxrt" not in extra and _older(version, scripts.POLYGRAPHY_DEBUG_FROM):
                if len(ran.stderr.strip().splitlines()) != 1 or "polygraphy" not in ran.stderr:
                    problems.append(f"run_polygraphy.sh refused polygraphy {version} in more than one line")
                continue
            if ran.returncode != 0:
                problems.append(f"run_polygraphy.sh {' '.join(extra)} with polygraphy {version}: exit "
                                f"{ran.returncode}: {ran.stderr.strip()}")
            for call in ran.calls:
                passed.update(a for a in call if a.startswith("-"))
                problems += sl.polygraphy_problems(call, listed) + _shape_problems(call, version)
    return problems, passed


def _shape_problems(call: list[str], version: str) -> list[str]:
    """`--trt-*-shapes` values as polygraphy's help gives them (tools/args/backend/trt/config.py: "Format:
    --trt-min-shapes <input0>:[D0,D1,..,DN] .. <inputN>:[D0,D1,..,DN]"): a value bash globbed is caught here."""
    out, key = [], None
    for arg in call:
        if arg.startswith("-"):
            key = arg if re.fullmatch(r"--trt-(min|opt|max)-shapes", arg) else None
        elif key and not re.fullmatch(r"[^:]+:\[\d+(,\d+)*\]", arg):
            out.append(f"polygraphy {version}: {key} {arg!r} is not <input>:[D0,D1,..,DN]")
    return out


def _older(version: str, than: str) -> bool:
    return tuple(map(int, version.split("."))) < tuple(map(int, than.split(".")))


def test_every_trtexec_call_holds_only_options_trtexec_parses_at_that_version(lists, tmp_path):
    trtexec, _ = lists
    m = small_manifest()
    kit = write_scripts(tmp_path / "kit", m)
    problems, passed = check_trtexec(kit, trtexec, sl.fake_tools(tmp_path / "tools"))
    assert not problems, "\n".join(problems)
    written = sl.static_flags((kit / kf.TRTEXEC_SCRIPT).read_text(), '"$TRTEXEC"')
    assert written <= passed, f"flags no run passed (so unchecked): {sorted(written - passed)}"
    # the gates as the sources draw them: debug tensors from 10.12 (absent in v10.11), --loadRefOutputs from 11.1
    # (absent in v11.0); the lists agree
    first = {opt: min(t.version for t in trtexec if opt in t.options)
             for opt in ("--markUnfusedTensorsAsDebugTensors", "--saveAllDebugTensors", "--loadRefOutputs",
                         "--accuracyThreshold")}
    assert first == {"--markUnfusedTensorsAsDebugTensors": scripts.DEBUG_TENSORS_FROM,
                     "--saveAllDebugTensors": scripts.DEBUG_TENSORS_FROM,
                     "--loadRefOutputs": scripts.REF_OUTPUTS_FROM, "--accuracyThreshold": scripts.REF_OUTPUTS_FROM}


def test_every_polygraphy_call_parses_with_that_versions_argument_groups(lists, tmp_path):
    _, polygraphy = lists
    m = small_manifest()
    kit = write_scripts(tmp_path / "kit", m)
    # a file whose name the unquoted shape `input_features:[120,32,11]` would glob to
    (kit / "input_features:1").write_text("")
    problems, passed = check_polygraphy(kit, polygraphy, sl.fake_tools(tmp_path / "tools"))
    assert not problems, "\n".join(problems)
    written = sl.static_flags((kit / kf.POLYGRAPHY_SCRIPT).read_text(), "polygraphy")
    assert written <= passed, f"flags no run passed (so unchecked): {sorted(written - passed)}"
    first = min((v for v, listed in polygraphy.items()
                 if any("--mark-unfused-tensors-as-debug-tensors" in r[1] for r in listed.rows)), key=sl._version_key)
    assert first == scripts.POLYGRAPHY_DEBUG_FROM


def test_a_planted_wrong_flag_is_reported(lists, tmp_path):
    """The check fails on a flag the pinned sources do not have: a misspelled trtexec option (every version), a
    real option outside its gate (only the versions below it), a misspelled polygraphy option."""
    trtexec, polygraphy = lists
    m = small_manifest()
    tools = sl.fake_tools(tmp_path / "tools")
    text = scripts.trtexec_script(m, _kit())
    typo = text.replace("--exportLayerInfo=", "--exportLayerInfos=")
    problems, _ = check_trtexec(write_scripts(tmp_path / "typo", m, trtexec=typo), trtexec, tools)
    assert {re.match(r"trtexec (\S+) ", p).group(1) for p in problems} == {t.tag for t in trtexec}
    assert all("--exportLayerInfos is no option" in p for p in problems)

    ungated = text.replace("typed=(); debug_build=();", "typed=(); debug_build=(--markUnfusedTensorsAsDebugTensors);")
    assert ungated != text
    problems, _ = check_trtexec(write_scripts(tmp_path / "ungated", m, trtexec=ungated), trtexec, tools)
    below = {t.tag for t in trtexec if t.version < scripts.DEBUG_TENSORS_FROM}
    assert {re.match(r"trtexec (\S+) ", p).group(1) for p in problems} == below and "v10.11" in below
    assert all("--markUnfusedTensorsAsDebugTensors is no option" in p for p in problems)

    text = scripts.polygraphy_script(m, _kit())
    typo = text.replace("--mark-unfused-tensors-as-debug-tensors", "--mark-unfused-tensors-as-debug")
    assert typo != text
    problems, _ = check_polygraphy(write_scripts(tmp_path / "poly", m, polygraphy=typo), polygraphy, tools)
    admitted = {v for v in polygraphy if not _older(v, scripts.POLYGRAPHY_DEBUG_FROM)}
    assert {re.match(r"polygraphy (\S+?):", p).group(1) for p in problems} == admitted
    assert all("--mark-unfused-tensors-as-debug is no option" in p for p in problems)


def test_the_readme_names_the_versions_checked(lists):
    trtexec, polygraphy = lists
    text = scripts.readme(small_manifest(), _kit())
    assert f"TensorRT {trtexec[0].tag}" in text and trtexec[-1].tag in text
    versions = list(polygraphy)
    assert f"polygraphy {versions[0]}" in text and versions[-1] in text
    assert scripts.POLYGRAPHY_DEBUG_FROM in text


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_trtexec_fails_exactly_the_outputs_cp_debug_calls_diverged(precision):
    """At the limit: an output with exactly as many elements beyond tolerance as max_share allows, and one more.
    trtexec's rule is taken from its source (tests/data/trt_sources/accuracy/v11.1.txt: a share, in double, fails at
    >= the threshold, read by std::stof as a float); cp_debug's is TensorDiff's own. With the threshold the kit used
    to pass (max_share itself), int8's 40 of 4000 elements (a share of exactly 0.01) failed trtexec — the float
    nearest 0.01 is below it — while cp_debug called it within tolerance."""
    import numpy as np

    from cp_debug.compare.diff import TensorDiff, default_tolerance

    rule = sl.facts("accuracy")["v11.1"]
    assert rule["fails_when"] == "accuracy >= threshold" and rule["type accuracyThresholdEndToEnd"] == "float"
    assert rule["l0_beyond"] == "absDiff > tolerance (in double)" and rule["l0_tolerance"] == "mAtol + mRtol * refAbs"
    tol = default_tolerance(precision)
    m = small_manifest()
    m = kf.Manifest(*[getattr(m, f) for f in ("cp_debug", "created", "model_record", "source", "held_precision",
                                              "precisions", "frames", "stages", "profile")],
                    {precision: {"atol": tol.atol, "rtol": tol.rtol, "max_share": tol.max_share}}, {})
    arms = dict(re.findall(r"(\w+)\) tol=\(([^)]*)\);;", scripts.trtexec_script(m, _kit())))
    text = re.search(r"--accuracyThreshold=(\S+)", arms[precision]).group(1)
    threshold = float(np.float32(text))  # std::stof: the float nearest the text
    for n in (7, 1000, 4000, 368640):
        limit = next(c for c in range(n + 1) if c / n > tol.max_share)  # cp_debug's fewest diverging elements
        for count in {max(limit - 1, 0), limit}:
            ref = np.zeros(n, np.float32)
            test = ref.copy()
            test[:count] = 1.0  # beyond atol + rtol * 0 at every precision
            diverged = TensorDiff.from_arrays("out", ref, test, tol).status == "diverged"
            fails = count / n >= threshold
            assert fails == diverged, (precision, n, count, text)
            assert scripts.threshold_exact(tol.max_share, threshold, n)
