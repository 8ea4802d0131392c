"""The per-layer INT8 quantization error of a run (`model.int8.quantization`) as rows, worst first.

`bisect --int8` measures, per quantized layer, the LOCAL error of quantize-dequantizing its weight and its input
(the FP32 model's own input to that layer on this run's scan) with the checkpoint's amax (`quant/sqnr.py`).
The terminal table and the HTML page both show it through these rows, so they say the same thing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cp_debug.bisect.subjects.model_facts import RecipeFacts
from cp_debug.bisect.result import BisectReport
from cp_debug.report._format import as_float, fmt_db, fmt_num

TITLE = "INT8 quantization error (per layer, this run's scan)"
CAPTION = ("each tensor quantized alone with its amax, nothing propagated: SQNR = 20·log10 ‖x‖/‖x−q(x)‖; "
           "clipped = share saturated; zeroed = share of the non-zero values rounded to 0")
HEADS = ("layer", "weight SQNR dB", "weight clipped %", "input SQNR dB", "input clipped %", "input zeroed %",
         "granularity (weight / input)", "probe")
NUMERIC = frozenset(HEADS[1:6])
TERMINAL_ROWS = 10  # the terminal shows the worst ten unless verbose


@dataclass(frozen=True)
class QuantRow:
    """One quantized layer; a figure the run did not measure is None."""

    layer: str
    weight_sqnr_db: float | None
    weight_clipped: float | None
    input_sqnr_db: float | None
    input_clipped: float | None
    input_zeroed: float | None
    granularity: str
    probe: str | None  # "#index" of the probe row when the layer is also a probe (same name)

    def cells(self) -> tuple[str, ...]:
        """The row's cells as text, in HEADS order."""
        return (self.layer, fmt_db(self.weight_sqnr_db), _pct(self.weight_clipped), fmt_db(self.input_sqnr_db),
                _pct(self.input_clipped), _pct(self.input_zeroed), self.granularity, self.probe or "")


def quant_rows(report: BisectReport) -> list[QuantRow]:
    """Every layer of `model.int8.quantization`, worst input SQNR first (layers without an input figure last,
    ordered by weight SQNR); [] when the run was not INT8 with a measured checkpoint."""
    int8 = report.facts.int8 if isinstance(report.facts, RecipeFacts) else None
    table = int8.get("quantization") if isinstance(int8, dict) else None
    if not isinstance(table, dict):
        return []
    probes = {p.name: p.index for p in report.probes}
    out = []
    for layer, entry in table.items():
        if not isinstance(entry, dict):
            continue
        w = entry.get("weight") if isinstance(entry.get("weight"), dict) else {}
        i = entry.get("input") if isinstance(entry.get("input"), dict) else {}
        out.append(QuantRow(str(layer), as_float(w.get("sqnr_db")), as_float(w.get("clipped")),
                            as_float(i.get("sqnr_db")), as_float(i.get("clipped")), as_float(i.get("zeroed")),
                            _granularity(w.get("granularity"), i.get("granularity")),
                            f"#{probes[layer]}" if layer in probes else None))
    return sorted(out, key=_worst_first)


def columns(qrows: list[QuantRow]) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    """(heads, cells of each row): the "probe" column only where some layer is also a probe."""
    if any(r.probe for r in qrows):
        return HEADS, [r.cells() for r in qrows]
    return HEADS[:-1], [r.cells()[:-1] for r in qrows]


def _worst_first(r: QuantRow) -> tuple:
    def key(v: float | None) -> tuple[int, float]:
        if v is None:
            return (1, 0.0)
        return (0, -math.inf if math.isnan(v) else v)  # NaN: something is wrong, show it first

    return (key(r.input_sqnr_db), key(r.weight_sqnr_db), r.layer)


def _granularity(weight, inp) -> str:
    return " / ".join(str(g) if g else "—" for g in (weight, inp))


def _pct(share: float | None) -> str:
    return fmt_num(None if share is None else 100 * share)
