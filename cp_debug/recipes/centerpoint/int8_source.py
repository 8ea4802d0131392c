"""`--int8 DIR|FILE`: the BN-fused fake-quant CenterPoint of a PTQ checkpoint, as the subject's one model.

Both sides of a bisect then run the same modules: the FP32 reference with every quantizer off (the BN-fused
network, equal to the unfused FP32 one up to float rounding), `torch-*-int8` with the checkpoint's calibrated
quantizers on (fake quantization), `ort-*-int8` the Q/DQ graph exported from the same modules with the
quantizers on (so its tensors carry the FP32 export's names). DIR is what `cpdebug quantize --out DIR` writes;
FILE an AWML PTQ/QAT checkpoint (fused weights + `_amax`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cp_debug.errors import BadInputError


@dataclass(frozen=True)
class Int8Model:
    model: object  # CenterPoint, BN-fused, quantizers inserted and all off, eval mode
    weights: str  # for the report's model info
    info: dict


def load_int8_model(path: str | Path, cfg) -> Int8Model:
    """The PTQ model of `path` (a PTQ dir or a checkpoint file) for preset `cfg`, every quantizer off."""
    from cp_debug.recipes.centerpoint.ptq_checkpoint import build_fakequant_model, load_ptq_checkpoint, read_ptq_dir
    from cp_debug.quant.quantizers import set_enabled

    p = Path(path)
    if not p.exists():
        raise BadInputError(f"--int8 {p} does not exist: give a PTQ dir (`cpdebug quantize --out DIR`) or a "
                            "PTQ/QAT checkpoint file")
    if p.is_dir():
        ptq = read_ptq_dir(p)
        if ptq.preset and ptq.preset != cfg.name:
            raise BadInputError(f"--int8 {p} was quantized for preset {ptq.preset!r}, not {cfg.name!r}: "
                                f"pass --preset {ptq.preset}")
        ckpt = ptq.checkpoint
    else:
        ckpt = p
    state = load_ptq_checkpoint(ckpt, cfg)
    if not state.amax:
        raise BadInputError(f"--int8 {ckpt} holds no `_amax` entries: it is not a PTQ/QAT checkpoint")
    model = build_fakequant_model(cfg, state)
    set_enabled(model, False)  # the FP32 side; torch-*-int8 / the Q/DQ export turn the calibrated ones on
    layers = list(state.amax)
    info = {"source": str(p), "checkpoint": str(ckpt), "quantized_layers": len(layers),
            "per_channel_weights": sum(1 for a in state.amax.values() if a.per_channel),
            "fp32_side": "the BN-fused model of the PTQ checkpoint with every quantizer off (equal to the "
                         "unfused FP32 network up to float rounding of the folded BN)",
            "torch_int8": "the same modules with the checkpoint's quantizers on (fake quantization)",
            "ort_int8": "the Q/DQ ONNX exported from the same modules with the quantizers on (not ORT's "
                        "own quantizer); TensorRT is not run by this path"}
    return Int8Model(model.eval(), f"PTQ checkpoint {ckpt} (BN-fused)", info)


def qdq_export(module, export):
    """() -> the ExportResult of `export()` run with `module`'s calibrated quantizers on (restored after)."""
    def run():
        import warnings

        from cp_debug.quant.quantizers import calibrated_on

        with calibrated_on(module), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about the python-float scales (constants)
            return export()
    return run


def layer_quant_error(model, forward_once) -> dict:
    """{layer: {"weight": {...}, "input": {...}}}: each quantized layer's weight and input SQNR (dB) and the
    shares clipped / rounded to zero (`quant/sqnr.py`), the input taken from this run's FP32 forward
    (`forward_once(model)`); for the report's `model.int8.quantization`."""
    import math

    from cp_debug.quant.sqnr import quantization_error

    def loop(m) -> int:
        forward_once(m)
        return 1

    out: dict = {}
    for r in quantization_error(model, loop).rows:
        sqnr = r.sqnr_db if math.isfinite(r.sqnr_db) else str(r.sqnr_db)
        out.setdefault(r.layer, {})[r.tensor] = {"sqnr_db": sqnr if isinstance(sqnr, str) else round(sqnr, 2),
                                                 "clipped": r.clipped, "zeroed": r.zeroed,
                                                 "granularity": r.granularity, "amax": r.amax}
    return out
