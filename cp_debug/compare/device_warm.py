"""The comparisons' first CUDA kernels, launched on small tensors while a command loads its model: the fused pass
(`fused_diff`), the bit-for-bit check (`device_diff.identical_many`) and the plots' passes (`device_plots`). A module
of its own: it stands on all three, which stand on one another in one direction only.
"""

from __future__ import annotations

import contextlib

from cp_debug import cuda_driver
from cp_debug.compare import fused_diff
from cp_debug.compare.device_diff import identical_many
from cp_debug.compare.device_plots import DevicePlots, plot_material


def warm_up() -> None:
    """The comparisons' first CUDA kernels launched on small tensors of each operand type: the fused pass
    (`fused_diff.warm_up`, Triton's first kernel ~0.8 s), the bit-for-bit check and the plots' passes (each torch
    kernel's first launch loads its module: ~0.1 s of the first stage's comparisons otherwise). Does nothing where
    CUDA is missing, and never raises (the comparisons say what goes wrong)."""
    fused_diff.warm_up()
    _warm_up_torch_passes()


def _warm_up_torch_passes() -> None:
    """`warm_up_on` the current CUDA device; nothing where there is none, and never raises."""
    with contextlib.suppress(Exception):  # a warm-up only: the comparisons say what goes wrong
        import torch

        cuda_driver.wait()  # a driver started on another thread: waited for without the GIL
        if torch.cuda.is_available():
            warm_up_on(torch.device("cuda"))
            torch.cuda.current_stream().synchronize()


def warm_up_on(device) -> None:
    """`warm_up`'s bit-for-bit check and plot passes, on small tensors of each operand type on `device` (raises
    what they raise: the tests call it on the CPU, so that a warm-up that cannot run is seen)."""
    import torch

    ref = torch.linspace(-1, 1, 4 * 64 * 64, device=device).reshape(4, 64, 64)
    for dtype in (torch.float32, torch.float16):
        test = (ref * 1.001).to(dtype)
        identical_many([("w", test, test.clone())])
        DevicePlots.make_all([p for p in plot_material([("w", ref, test)]) if p is not None])


def warm_up_in_background() -> list:
    """`warm_up` on two daemon threads, the torch passes apart from Triton's compile (the first stage's noise run
    checks bit for bit before Triton's first kernel is ready): started, returned for whoever wants to wait for them
    (`parallel.in_background` threads, as `sweep.warm.warming` returns its helpers).

    torch is imported here, on the calling thread, before either starts: two threads importing torch side by side
    (and the main thread's own first `import torch` beside them) can each be handed the other's half-initialized
    module — Python's import locks break such a wait cycle that way — and the caller's next `torch.cuda` then fails
    ("partially initialized module 'torch' has no attribute 'cuda'": `bisect --onnx … -b ort,ort-cuda-fp8`, exit 70
    in 2 of 20 runs on an H200). Then the CUDA driver starts on its own helper thread (`cuda_driver.start`): the
    backend check asks NVML and imports no torch (issue 118, item 2), so this is the process's first torch."""
    import torch  # noqa: F401 - see the docstring

    from cp_debug.parallel import in_background

    cuda_driver.start()  # torch is in: the driver starts beside the main thread (the check no longer imports torch)

    return [in_background(_warm_up_torch_passes, "cpdebug-compare-warm-up-torch"),
            in_background(fused_diff.warm_up, "cpdebug-compare-warm-up")]
