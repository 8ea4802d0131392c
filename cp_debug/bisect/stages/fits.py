"""Whether a model fits this machine for a bisect, said in one line before the work (issue 83): a model too big for
the host's memory or for the GPU's is refused (exit 3) with what it needs, what there is, and what to do.

What a run holds, measured (docs/measurements.md, issue 83): the weights `W` once in the model (a `--torch` module;
an ONNX file's stay in their files) and once in each ONNX Runtime session on that side (float16: half; a CPU
float16 candidate is emulated in float32, a whole copy), and the conversions between them briefly; a 2.24 GB model
peaked at 8.0 GB (3.6 W) on the CPU with torch,ort-cpu-fp16. Models under `CHECKED_FROM` bytes are not checked:
their probes, not their weights, set what they hold, and the reference store bounds those."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from cp_debug.errors import BackendUnavailableError

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.backends.spec import BackendSpec

CHECKED_FROM = 1 << 30
_TRANSIENT = 0.5  # a conversion's copy, for a moment


def needs(weights: int, specs: "Sequence[BackendSpec]", module_resident: bool) -> tuple[int, int]:
    """(host bytes, GPU bytes) a bisect of a model of `weights` bytes holds at most with these backends;
    `module_resident`: a torch module holds the weights in host memory already (`--torch`)."""
    host = weights * (1.0 if module_resident else 0.0) + weights * _TRANSIENT
    gpu = 0.0
    for spec in specs:
        share = 0.5 if spec.precision in ("fp16", "bf16") and not spec.is_torch else 1.0
        if spec.device == "cuda":
            gpu += weights * share
        elif not spec.is_torch:  # an ONNX Runtime CPU session's copy (float16 emulated in float32) and
            host += weights * 1.5  # what making it holds for a while
    return int(host), int(gpu)


def subject_weights(subject) -> tuple[int, bool]:
    """(the bytes of a subject's weights, whether a torch module holds them in host memory): its stages' modules'
    parameters and buffers, else their ONNX graphs' tensors (inline or stored)."""
    from cp_debug.graph.onnx_files import total_nbytes

    total, resident = 0, False
    for st in subject.stages:
        if st.has_module:
            resident = True
            total += st.weight_bytes()
        elif st.onnx_model is not None:
            total += total_nbytes(st.onnx_model)
    return total, resident


def check_fits(weights: int, specs: "Sequence[BackendSpec]", module_resident: bool, doing: str = "bisect") -> None:
    """BackendUnavailableError (exit 3) where the host's available memory or a GPU's free memory is short of what
    `needs` says; nothing for a model under `CHECKED_FROM`. `doing`: the command, as the line names it."""
    if weights < CHECKED_FROM:
        return
    host, gpu = needs(weights, specs, module_resident)
    have = host_available()
    if have is not None and host > have:
        raise BackendUnavailableError(
            f"the model's {_gb(weights)} of weights need about {_gb(host)} of host memory for this {doing} "
            f"({', '.join(str(s) for s in specs)}); {_gb(have)} is available: run it on a machine with more memory, "
            "with fewer ONNX Runtime CPU backends, or with a CUDA reference and candidate (their weights on the GPU)")
    free = gpu_free() if gpu else None
    if free is not None and gpu > free:
        raise BackendUnavailableError(
            f"the model's {_gb(weights)} of weights need about {_gb(gpu)} of GPU memory for this {doing} (a copy on "
            f"each CUDA backend); {_gb(free)} is free on the GPU: give a CPU reference (torch or ort) so that only "
            "the candidate's copy is on the GPU, or a GPU with more memory")


def host_available() -> int | None:
    """MemAvailable from /proc/meminfo, in bytes; None where it cannot be read."""
    from cp_debug.heap import meminfo

    return meminfo("MemAvailable")


def gpu_free() -> int | None:
    """The free memory of the current CUDA device, in bytes; None where torch or CUDA cannot tell."""
    try:
        import torch

        return int(torch.cuda.mem_get_info()[0]) if torch.cuda.is_available() else None
    except Exception:  # noqa: BLE001 - no driver, no device: the runners say so in their own line
        return None


def _gb(n: float) -> str:
    return f"{n / 1e9:.3g} GB"
