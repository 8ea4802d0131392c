"""`cpdebug bisect --int8 DIR`: FP32 vs the deployed INT8 of a PTQ dir written by `cpdebug quantize` (tiny preset,
2 calibration scenes), layer by layer, through the CLI as a user runs it (in process)."""

from __future__ import annotations

import json
import re

import pytest

from tests.cli_run import cpdebug


def strict(text: str) -> dict:
    return json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))


@pytest.fixture(scope="module")
def ptq_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("ptq") / "tiny"
    proc = cpdebug("quantize", "--preset", "tiny", "--calib-n", 2, "--method", "max", "--eval-n", 1,
                   "--out", out, "--quiet")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


@pytest.fixture(scope="module")
def fp32_vs_int8(ptq_dir):
    """torch (FP32: the fused model, quantizers off) against fake-quant torch and the Q/DQ graph in ORT."""
    proc = cpdebug("bisect", "--preset", "tiny", "--backends", "torch,torch-cpu-int8,ort-cpu-int8", "--int8", ptq_dir,
                   "--no-refine", "--no-local", "--no-noise-floor", "--json", "-")
    assert proc.returncode in (0, 1, 3, 4), proc.stderr[-2000:]  # 3: no int8 kernel ran (Intel AMX)
    return strict(proc.stdout)


@pytest.fixture(scope="module")
def fakequant_vs_qdq(ptq_dir):
    proc = cpdebug("bisect", "--preset", "tiny", "--backends", "torch-cpu-int8,ort-cpu-int8", "--int8", ptq_dir,
                   "--no-noise-floor", "--json", "-")
    assert proc.returncode in (0, 1, 3, 4), proc.stderr[-2000:]  # 3: no int8 kernel ran (Intel AMX)
    return strict(proc.stdout)


def heads(report: dict, cand: str) -> dict[str, dict]:
    rows = {r["probe"]: r for r in report["results"][cand]}
    return {h: rows[f"pts_bbox_head.task_heads.0.{h}"] for h in ("heatmap", "reg", "height", "dim", "rot", "vel")}


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
@pytest.mark.slow
def test_both_int8_candidates_have_results_and_say_what_ran(fp32_vs_int8, ptq_dir):
    r = fp32_vs_int8
    assert r["candidates"] == ["torch-cpu-int8", "ort-cpu-int8"]
    for cand in r["candidates"]:
        assert all(row["status"] in ("ok", "diverged") for row in heads(r, cand).values())
    info = r["model"]["int8"]
    assert info["source"] == str(ptq_dir) and info["quantized_layers"] > 0
    assert "quantizer off" in info["fp32_side"] or "every quantizer off" in info["fp32_side"]
    # the ORT candidate ran the exported Q/DQ graph, not ORT's own quantizer, and whole (no lockstep)
    transform = r["settings"]["backends"]["ort-cpu-int8"]["pts_backbone_neck_head"]["precision_transform"]
    assert transform["kind"] == "qdq_model" and transform["quantize_nodes"] >= 2 * info["quantized_layers"] - 2
    assert "Q/DQ graph whole" in r["settings"]["execution"]["pts_backbone_neck_head"]
    # INT8 differs from FP32 at the heads (it is quantized), both candidates alike
    for cand in r["candidates"]:
        assert min(row["rel_rmse"] for row in heads(r, cand).values()) > 1e-3
    # per-layer quantization error of the checkpoint, measured on this run's FP32 inputs
    q = info["quantization"]
    conv = "pts_backbone.blocks.0.0"
    assert set(q[conv]) == {"weight", "input"} and 0 < q[conv]["weight"]["sqnr_db"] < 80
    assert 0 <= q[conv]["input"]["clipped"] <= 1 and 0 <= q[conv]["input"]["zeroed"] <= 1


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
@pytest.mark.slow
def test_fake_quant_and_qdq_graph_agree_layer_by_layer(fakequant_vs_qdq, fp32_vs_int8):
    rows = fakequant_vs_qdq["results"]["ort-cpu-int8"]
    assert not any("_quantizer" in r["probe"] for r in rows)  # refinement stops at the quantized conv, the layer
    # Each quantized conv run alone on the same inputs: the Q/DQ nodes carry the checkpoint's scales, so
    # the deployed graph computes what the fake-quant module does up to float summation order.
    # (the descent goes into the block whose own error stands furthest beyond its budget, whichever that is)
    convs = [r for r in rows if r["local_rel_rmse"] is not None and r["probe"].startswith("pts_backbone.blocks.")
             and r["probe"].count(".") == 3]
    assert len(convs) >= 6, [r["probe"] for r in rows]
    assert max(r["local_rel_rmse"] for r in convs) < 1e-3
    # End to end only INT8 rounding flips remain (amplified by the random tiny network): smaller at every head
    # than the quantization error itself.
    qdq = heads(fakequant_vs_qdq, "ort-cpu-int8")
    quant = heads(fp32_vs_int8, "torch-cpu-int8")
    for h in qdq:
        assert qdq[h]["rel_rmse"] < quant[h]["rel_rmse"], h


def test_torch_int8_without_int8_is_one_line():
    proc = cpdebug("bisect", "--preset", "tiny", "--backends", "torch,torch-cpu-int8")
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("cpdebug: error:")]
    assert len(lines) == 1 and "--int8 DIR" in lines[0] and "Traceback" not in proc.stderr


def test_int8_dir_of_another_preset_is_refused(ptq_dir):
    proc = cpdebug("bisect", "--preset", "demo", "--backends", "torch,ort-cpu-int8", "--int8", ptq_dir)
    assert proc.returncode == 2
    assert "pass --preset tiny" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_eval_int8_runs_the_ptq_model_next_to_fp32(ptq_dir):
    proc = cpdebug("eval", "--preset", "tiny", "--backends", "torch,torch-cpu-int8,ort-cpu-int8", "--int8", ptq_dir,
                   "--n", 1, "--json", "-")
    assert proc.returncode == 4, proc.stderr[-2000:]  # INT8 of random weights changes boxes beyond its noise
    r = strict(proc.stdout)
    assert r["outcome"] == "degraded" and {v["precision"] for v in r["verdicts"].values()} == {"int8"}
    assert set(r["metrics"]) == {"torch", "torch-cpu-int8", "ort-cpu-int8"}
    assert r["settings"]["int8_dir"] == str(ptq_dir) and r["settings"]["calibration_scenes"] == 0  # no ORT calibration
    assert any("Conv" in n for n in r["notes"]["ort-cpu-int8"])  # what ORT ran on the Q/DQ files, said


def without_plots(report: dict) -> dict:
    """A copy of `report` without the root causes' error plots (`plots`: histograms and heat maps matplotlib draws,
    seconds of a test): what the HTML tests below read is the INT8 section and the candidates' tables, drawn alike
    with or without them."""
    d = json.loads(json.dumps(report))
    d["plots"] = {}
    return d


def worst_first(q: dict) -> list[str]:
    """Layers by input SQNR, lowest first; ties (the JSON keeps 0.01 dB) by weight SQNR, then name."""
    return sorted(q, key=lambda n: (q[n]["input"]["sqnr_db"], q[n]["weight"]["sqnr_db"], n))


def _terminal(report, verbose=False) -> str:
    from rich.console import Console

    from cp_debug.report.table import render_table

    console = Console(record=True, width=200, color_system=None)
    render_table(report, console, verbose=verbose)
    return console.export_text()


def _layer_lines(text: str, layers) -> list[str]:
    """The layers in the order their rows appear in `text` (a layer named in a row of its own)."""
    found = []
    for line in text.splitlines():
        first = line.split()[0] if line.split() else ""
        if first in layers:
            found.append(first)
    return found


def test_quantization_error_shows_in_the_table_worst_first(fp32_vs_int8):
    from cp_debug.bisect.result import BisectReport
    from cp_debug.report.int8_rows import TITLE

    q = fp32_vs_int8["model"]["int8"]["quantization"]
    worst = worst_first(q)
    report = BisectReport.from_json(fp32_vs_int8)
    out = _terminal(report)
    section = out[out.index(TITLE):]
    assert _layer_lines(section, q) == worst[:10]  # the worst ten, worst input SQNR first
    assert f"… {len(q) - 10} more layers" in section
    row = next(ln for ln in section.splitlines() if ln.split() and ln.split()[0] == worst[0])
    w, i = q[worst[0]]["weight"], q[worst[0]]["input"]
    assert f"{w['sqnr_db']:.1f}" in row and f"{i['sqnr_db']:.1f}" in row and "per-channel (axis 0) / per-tensor" in row
    assert f"{100 * i['zeroed']:.3g}" in row
    everything = _terminal(report, verbose=True)
    assert _layer_lines(everything[everything.index(TITLE):], q) == worst and "more layers" not in everything


def test_quantization_error_shows_in_the_html_with_probe_marks(fakequant_vs_qdq):
    from cp_debug.bisect.result import BisectReport
    from cp_debug.report.html import render_html

    q = fakequant_vs_qdq["model"]["int8"]["quantization"]
    worst = worst_first(q)
    html = render_html(BisectReport.from_json(without_plots(fakequant_vs_qdq)))
    section = html[html.index('<section id="int8-quantization">'):]
    section = section[:section.index("</section>")]
    layers = re.findall(r'<tr><td class="probe">([^<]+)</td>', section)
    assert layers == worst  # every layer, worst first
    # the refined run has the backbone's quantized convs as probes: their rows name the probe row
    index = {p["name"]: p["index"] for p in fakequant_vs_qdq["probes"]}
    probed = [n for n in q if n in index]
    assert probed, "the refined run has no quantized layer among its probes"
    for n in probed:
        assert re.search(rf'<td class="probe">{re.escape(n)}</td>.*<td class="">#{index[n]}</td></tr>', section)


def test_infinite_sqnr_renders_and_sorts_sanely(fp32_vs_int8):
    from cp_debug.bisect.result import BisectReport
    from cp_debug.report.int8_rows import quant_rows

    d = json.loads(json.dumps(fp32_vs_int8))
    q = d["model"]["int8"]["quantization"]
    exact, dead = list(q)[:2]
    q[exact]["input"]["sqnr_db"] = "inf"  # q(x) == x: how layer_quant_error writes it
    q[dead]["input"]["sqnr_db"] = "-inf"  # an all-zero input
    report = BisectReport.from_json(d)
    rows = quant_rows(report)
    assert rows[0].layer == dead and rows[-1].layer == exact
    out = _terminal(report, verbose=True)
    assert next(ln for ln in out.splitlines() if ln.split()[:1] == [exact]).split()[3] == "inf"
    assert next(ln for ln in out.splitlines() if ln.split()[:1] == [dead]).split()[3] == "-inf"


def test_a_report_without_int8_has_no_quantization_section(fp32_vs_int8):
    from cp_debug.bisect.result import BisectReport
    from cp_debug.report.html import render_html
    from cp_debug.report.int8_rows import TITLE

    d = without_plots(fp32_vs_int8)
    del d["model"]["int8"]
    report = BisectReport.from_json(d)
    assert TITLE not in _terminal(report) and "int8-quantization" not in render_html(report)
