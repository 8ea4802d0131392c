"""PyTorch runner: the reference (torch-cpu-fp32) and torch's own reduced precisions (tf32, fp16, bf16; fp8: E4M3
fake quantization of every Linear / Conv, on CUDA sm_89+ nn.Linear as real FP8 GEMMs: `torch_fp8.py`).

fp16/bf16 are real reduced-precision arithmetic: the module copy is cast with `.to(dtype)` and floating inputs
too, so every op computes on float16/bfloat16 tensors. On the CPU, convolutions, matrix products and
normalisations are by default *emulated* as a GPU runs them (`torch_emulation.py`: float32 accumulation on the
half inputs, result rounded to the half type; the report says "emulated"): torch's CPU half kernels are slow
(minutes for one CenterPoint backbone) and are not what deploys. `CPDEBUG_TORCH_CPU_HALF=native` uses torch's
CPU half kernels instead. Measured with torch 2.13 (CPU build, AVX512 x86) on
Conv2d 64→32 3×3: the float16 output matches "inputs and weights rounded to float16, float32 accumulation,
output rounded to float16" on 99.9% of elements and is 1 ulp away on the rest (summation order); a partial sum
of 6e4+6e4-6e4-6e4 does not overflow (float32 accumulator), while a float16 output above 65504 is inf —
the same contract as cuDNN/cuBLAS FP16 with float32 accumulation. TF32 flags are switched on only inside
`infer` of a `*-tf32` runner and restored after.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from cp_debug.backends.base import PrecisionReport, Runner
from cp_debug.backends.spec import CAPABILITIES, BackendSpec
from cp_debug.backends.pytorch.torch_tensors import (STAGING, device_copy, first_tensor, flatten, is_tensor,
    module_copy_on,
                                             to_numpy)
from cp_debug.determinism import Determinism
from cp_debug.sites import Site, at_path, tensors_in
from cp_debug.errors import BackendUnavailableError, BadInputError, UserCodeError

if TYPE_CHECKING:  # pragma: no cover
    import torch

TORCH_INT8_HINT = ("{spec} runs a fake-quantized PTQ model and this model has no calibrated quantizers: pass "
                   "--int8 DIR (a PTQ dir from `cpdebug quantize --out DIR`, or an AWML PTQ/QAT checkpoint)")
CPU_HALF_ENV = "CPDEBUG_TORCH_CPU_HALF"  # "native": torch's CPU half kernels; default "emulated"
TORCH_CUDA_HINT = ("torch-cuda needs a CUDA device: torch.cuda.is_available() is False ({why}); run on a GPU "
                   "machine with a CUDA build of torch, or use torch-cpu-*")


class TorchRunner(Runner):
    """Runs a `torch.nn.Module` (never the caller's object: a deep copy made in `activate`).

    input_names: the feed keys, in the module's positional-argument order.
    output_names: names for the module's outputs (a tensor, a tuple/list mapped positionally after flattening,
        or a dict mapped by key).
    probe_modules: probe names whose values are returned too: a qualified submodule name (its first call's output,
        the first tensor of a container), or a call site's tensor named in `probe_sites` (`relu#2`, `attn[0]`:
        `torch_trace.Site`, from the module trace). `capture_inputs` adds the inputs of each probe's call under
        `name:in0`, `name:in1`…
    on_probe: if given, each probe array is passed to `on_probe(name, array)` as it is produced and not kept in
        the result (streaming for big models). The array is valid only during the call: on CUDA it is a
        read-only view of one reused page-locked host buffer (`torch_tensors.PinnedStaging`), so a consumer that
        keeps it must copy it.
    on_device_probe: set as an attribute: each floating probe tensor is first offered, where it lies (the GPU
        of a CUDA runner), to `on_device_probe(name, tensor)`; when it returns True the probe is dealt with and does not
        reach the host. The tensor may be changed by a later in-place op: clone what you keep.
    """

    capabilities = CAPABILITIES["torch"]  # run_submodule, on_probe streaming, a PTQ model's fake quantizers

    def __init__(self, module: "torch.nn.Module", input_names: Sequence[str], output_names: Sequence[str],
                 spec: BackendSpec, *, probe_modules: Iterable[str] = (), capture_inputs: bool = False,
                 on_probe: Callable[[str, np.ndarray], None] | None = None, determinism: Determinism = Determinism(),
                 probe_sites: "Mapping[str, Site] | None" = None, calib_feeds: Sequence[dict] | None = None):
        if spec.framework != "torch":
            raise BadInputError(f"TorchRunner runs torch-* specs, not {spec}")
        super().__init__(str(spec))
        self.calib_feeds = list(calib_feeds or ())  # fp8's max calibration (none: the first input run)
        self.spec = spec
        self._source = module
        self.input_names = tuple(input_names)
        self.output_names = tuple(output_names)
        self.probe_modules = tuple(dict.fromkeys(probe_modules))
        self.probe_sites = {n: (probe_sites or {}).get(n) or Site(n) for n in self.probe_modules}
        self.capture_inputs = capture_inputs
        self.on_probe = on_probe
        self.on_device_probe: Callable[[str, "torch.Tensor"], bool] | None = None
        self.determinism = determinism
        self._module = None
        self._device = None
        self._dtype = None
        self._hooks: list = []
        self._probe_buf: dict[str, np.ndarray] | None = None
        self._calls: Counter = Counter()
        self._observed: Counter = Counter()  # output dtypes of parameterised leaf modules, over all infer calls
        self._cpu_check: str | None = None
        self._int8_layers = 0  # int8: layers whose fake quantizers run
        self._fp8 = None  # fp8: the quantized layers of the module copy (torch_fp8.Fp8Lane)
        self._emulate = False  # CPU fp16/bf16: float32 accumulation around half storage (torch_emulation.py)
        self._on_device = False  # inside infer_device: outputs and probes stay torch tensors
        self._channels_last = False  # CUDA fp16/tf32 under the heuristic conv choice (Determinism.channels_last)
        self._split_bn = 0  # CUDA: BatchNorm2d modules run with rows as channels where bit-identical (torch_batchnorm)

    # -- the contract ------------------------------------------------------------------------------------
    def _activate(self) -> None:
        import torch

        if self.spec.device == "cuda" and not torch.cuda.is_available():
            why = "torch is a CPU-only build" if torch.version.cuda is None else "no GPU visible to this process"
            raise BackendUnavailableError(TORCH_CUDA_HINT.format(why=why))
        if not isinstance(self._source, torch.nn.Module):
            raise BadInputError(f"TorchRunner needs a torch.nn.Module, got {type(self._source).__name__}")
        named = dict(self._source.named_modules())
        unknown = [n for n, site in self.probe_sites.items() if site.module not in named]
        if unknown:
            some = ", ".join(repr(n) for n in list(named)[1:6])
            raise BadInputError(f"unknown probe module(s) {', '.join(map(repr, unknown[:5]))}: module "
                                f"names look like {some}")
        self._observed.clear()
        self._device = torch.device("cuda" if self.spec.device == "cuda" else "cpu")
        self._dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(self.spec.precision, torch.float32)
        module = module_copy_on(self._source, self._device).eval()  # parameters and buffers on the device
        if self._dtype != torch.float32:
            module = module.to(self._dtype)
        self._channels_last = self.determinism.channels_last(self.spec.device, self.spec.precision)
        if self._channels_last:  # NHWC convs on the tensor cores, as a deployment runs them (4-D weights)
            module = module.to(memory_format=torch.channels_last)
        if self.spec.precision == "int8":  # on the copy only: the source (the FP32 reference) keeps them off
            from cp_debug.quant.quantizers import enable_calibrated, is_ptq

            if not is_ptq(module):
                raise BadInputError(TORCH_INT8_HINT.format(spec=self.spec))
            self._int8_layers = enable_calibrated(module)
        if self.spec.precision == "fp8":  # on the copy; the FP32 module itself calibrates (torch_fp8.py)
            from cp_debug.backends.pytorch.torch_fp8 import Fp8Lane

            self._fp8 = Fp8Lane(module, self._device)
        if self._device.type == "cuda":  # the same numbers at the card's memory pace, checked per shape
            from cp_debug.backends.pytorch.torch_batchnorm import split_rows

            self._split_bn = split_rows(module)
        self._module = module
        self._register_hooks()
        if self.spec.device == "cpu" and self._dtype != torch.float32:
            self._emulate = _cpu_half_mode() == "emulated"
            if not self._emulate:
                from cp_debug.backends.pytorch.torch_emulation import check_cpu_reduced

                self._cpu_check = check_cpu_reduced(self._dtype)

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._forward(self._tensors_from_feed(feed), on_device=False)

    def _infer_device(self, feed: dict[str, "torch.Tensor"]) -> dict[str, "torch.Tensor"]:
        """Outputs and probes stay torch tensors on this runner's device (probes copied there: a later in-place op
        must not change them)."""
        return self._forward(self._tensors_from_feed(feed), on_device=True)

    def _forward(self, args: list, on_device: bool) -> dict:
        import torch

        self._probe_buf = {}
        self._calls.clear()
        self._on_device = on_device
        try:
            with self.determinism.apply_torch(self.spec.device, allow_tf32=self.spec.precision == "tf32"), \
                    torch.no_grad():
                try:
                    if self._fp8 is not None and not self._fp8.calibrated:
                        self._calibrate_fp8(args)  # float32, outside the quantized arithmetic
                    with self._arithmetic():
                        result = self._module(*args)
                except Exception as err:
                    if isinstance(err, (RuntimeError, NotImplementedError)):
                        self._raise_if_missing_kernel(err)
                    names = {id(m): n for n, m in self._module.named_modules()}
                    user = UserCodeError.in_model(err, names, f"running in {self.spec}")
                    if user is None:  # cp_debug's own code on the way: its bug
                        raise
                    raise user from err
            out = self._map_outputs(result)
            probes = self._probe_buf
        finally:
            self._probe_buf = None
            self._on_device = False
        out.update(probes)
        return out

    def _calibrate_fp8(self, args: list) -> None:
        """FP8's max calibration in float32: over the calibration feeds, else over this input (as `ort-*-fp8`); the
        probes see none of it."""
        feeds = [self._tensors_from_feed(f) for f in self.calib_feeds] or [args]
        saved, self._probe_buf = self._probe_buf, None
        try:
            with self._fp8.calibrating(len(self.calib_feeds)):
                for a in feeds:
                    self._module(*a)
        finally:
            self._probe_buf = saved
            self._calls.clear()

    def _deactivate(self) -> None:
        if self._fp8 is not None:
            self._fp8.release()
        for h in self._hooks:
            h.remove()
        self._hooks = []
        self._module = None
        if self._device is not None and self._device.type == "cuda":
            import torch

            torch.cuda.empty_cache()

    # -- local error -------------------------------------------------------------------------------------
    def _run_submodule(self, name: str, inputs: tuple[np.ndarray, ...]) -> np.ndarray:
        """Run submodule `name` ("" = the whole module) alone on `inputs`, at this runner's device and precision.

        Returns its output (first tensor of a tuple) as float32. Probe hooks do not fire.
        """
        import torch

        named = dict(self._module.named_modules())
        site = self.probe_sites.get(name) or Site(name)
        if site.module not in named:
            some = ", ".join(repr(n) for n in list(named)[1:6])
            raise BadInputError(f"unknown submodule {name!r}: module names look like {some}")
        args = tuple(self._to_tensor(f"{name}:in{i}", a) for i, a in enumerate(inputs))
        saved, self._probe_buf = self._probe_buf, None
        try:
            with self.determinism.apply_torch(self.spec.device, allow_tf32=self.spec.precision == "tf32"), \
                    torch.no_grad(), self._arithmetic():
                y = named[site.module](*args)
        finally:
            self._probe_buf = saved
        t = _site_tensor(y, site)
        if t is None:
            raise BadInputError(f"submodule {name!r} returned no tensor ({type(y).__name__})")
        return to_numpy(t)

    # -- information -------------------------------------------------------------------------------------
    def settings(self) -> dict:
        import torch

        return {
            "backend": str(self.spec),
            "torch": torch.__version__,
            "device": self.spec.device,
            "dtype": {"fp16": "float16", "bf16": "bfloat16"}.get(self.spec.precision, "float32"),
            **({"half_arithmetic": "emulated" if self._emulate else "native"}
               if self.spec.device == "cpu" and self.spec.precision in ("fp16", "bf16") else {}),
            **({"attention": _attention(self.spec, self._emulate)}
               if self.spec.precision in ("fp16", "bf16") else {}),
            "tf32": self.spec.precision == "tf32",
            **({"memory_format": "channels_last" if self._channels_last else "contiguous",
                "cudnn_algo": self.determinism.cudnn_algo,
                "batch_norm_rows_as_channels": self._split_bn} if self.spec.device == "cuda" else {}),
            **({"fake_quant_layers": self._int8_layers} if self.spec.precision == "int8" else {}),
            **(self._fp8.settings() if self._fp8 is not None else {}),
            "probe_modules": len(self.probe_modules),
            "capture_inputs": self.capture_inputs,
            **{f"determinism.{k}": v for k, v in self.determinism.settings()["torch"].items()},
            "seed": self.determinism.seed if self.determinism.enabled else None,
        }

    def precision_report(self) -> PrecisionReport | None:
        if self._dtype is None:  # never activated
            return None
        req = self.spec.precision
        notes: list[str] = []
        effective = req
        if req == "tf32":
            import torch

            cap = torch.cuda.get_device_capability(self._device) if torch.cuda.is_available() else (0, 0)
            if cap[0] < 8:
                effective = "fp32"
                notes.append(f"GPU sm_{cap[0]}{cap[1]} has no TF32: ran FP32")
        if req == "int8" and not self._int8_layers:
            notes.append("no quantized layer here: the PTQ model keeps it in float32, and so did this run")
        elif req == "int8":
            notes.append(f"fake quantization: {self._int8_layers} layers quantize-dequantize their input and weight "
                         "with the checkpoint's amax (symmetric INT8, as Q/DQ), arithmetic in float32")
        if req == "fp8" and self._fp8 is not None:
            effective = self._fp8.report(notes)
        if req in ("fp16", "bf16") and self._emulate:
            notes.append(f"emulated: {self._dtype_name()} storage, float32 accumulation in conv/matmul/norm "
                         f"(as GPU FP16 kernels; {CPU_HALF_ENV}=native for torch's CPU half kernels)")
        if req in ("fp16", "bf16"):
            if self._cpu_check:
                notes.append(self._cpu_check)
                if self._cpu_check.startswith("not "):
                    effective = "fp32"
        want = {"fp16": "float16", "bf16": "bfloat16"}.get(req, "float32")
        if self._observed:
            total = sum(self._observed.values())
            other = {k: v for k, v in self._observed.items() if k != want}
            if other:
                n = sum(other.values())
                notes.append(f"{n} of {total} parameterised layer calls produced "
                             f"{'/'.join(sorted(other))} instead of {want} (explicit casts in forward?)")
                if effective == req:
                    effective = "mixed"
        else:
            notes.append("no inference run yet: layer output dtypes not observed")
        return PrecisionReport(req, effective, tuple(notes))

    # -- internals ---------------------------------------------------------------------------------------
    def _arithmetic(self):
        """The emulation mode around a forward (CPU fp16/bf16), FP8's layers (fp8), else nothing."""
        import contextlib

        if self._fp8 is not None:
            return self._fp8.mode()
        if not self._emulate:
            return contextlib.nullcontext()
        from cp_debug.backends.pytorch.torch_emulation import HalfAccumulateFp32

        return HalfAccumulateFp32(self._dtype)

    def _dtype_name(self) -> str:
        return str(self._dtype).replace("torch.", "")

    def _register_hooks(self) -> None:
        named = dict(self._module.named_modules())
        wanted: dict[str, list[tuple[str, Site]]] = {}
        for name, site in self.probe_sites.items():
            wanted.setdefault(site.module, []).append((name, site))
        for module, sites in wanted.items():
            self._hooks.append(named[module].register_forward_hook(self._make_probe_hook(module, sites)))
        # Observe the dtype parameterised leaf layers really computed in (catches `x.float()` inside forward).
        for mod in self._module.modules():
            if next(mod.children(), None) is None and any(True for _ in mod.parameters(recurse=False)):
                self._hooks.append(mod.register_forward_hook(self._observe_hook))

    def _raise_if_missing_kernel(self, err: BaseException) -> None:
        """torch has no kernel for an op at this dtype/device: that is this backend being unavailable, not a bug."""
        msg = str(err)
        if "not implemented for" in msg and ("'Half'" in msg or "'BFloat16'" in msg):
            raise BackendUnavailableError(
                f"{self.spec}: torch {self.spec.device} has no {self.spec.precision} kernel for an op of this model "
                f"({msg.splitlines()[0][:120]}); try torch-cuda-{self.spec.precision} or another precision"
            ) from err

    def _observe_hook(self, module, args, output) -> None:
        t = first_tensor(output)
        if t is not None and t.is_floating_point():
            self._observed[str(t.dtype).replace("torch.", "")] += 1

    def _make_probe_hook(self, module_name: str, sites: list[tuple[str, "Site"]]):
        def hook(module, args, output):
            if self._probe_buf is None:  # run_submodule, or a call outside infer
                return
            self._calls[module_name] += 1
            k = self._calls[module_name]
            for key, site in sites:
                if site.call != k:
                    continue
                t = _site_tensor(output, site)
                if t is not None:
                    self._emit(key, t)
                if self.capture_inputs:
                    for i, a in enumerate(args):
                        if is_tensor(a):
                            self._emit(f"{key}:in{i}", a)
        return hook

    def _emit(self, key: str, t) -> None:
        if self.on_probe is None:
            self._probe_buf[key] = device_copy(t) if self._on_device else to_numpy(t)
        elif t.is_floating_point() and self.on_device_probe is not None and self.on_device_probe(key, t):
            return
        elif t.is_cuda and t.is_floating_point():
            # through one page-locked buffer, not a fresh pageable copy per probe (4.3 s of an awml-base
            # `--level all` bisect on the H100, whose 8.7 GB of probes are read twice)
            self.on_probe(key, STAGING.lend(t))
        else:
            self.on_probe(key, to_numpy(t))

    def _tensors_from_feed(self, feed: dict[str, np.ndarray]) -> list:
        if not isinstance(feed, dict):
            raise BadInputError(f"the feed must be a dict of input name → array, got {type(feed).__name__}")
        unknown = [k for k in feed if k not in self.input_names]
        if unknown:
            raise BadInputError(f"unknown input name(s) {', '.join(map(repr, unknown))}: the module's inputs are "
                                f"{', '.join(self.input_names)}")
        missing = [k for k in self.input_names if k not in feed]
        if missing:
            raise BadInputError(f"missing input(s) {', '.join(map(repr, missing))}: the module's inputs are "
                                f"{', '.join(self.input_names)}")
        return [self._to_tensor(n, feed[n]) for n in self.input_names]

    def _to_tensor(self, name: str, value: Any):
        import torch

        if isinstance(value, torch.Tensor):  # infer_device's feed (or a caller's tensor): moved, never via numpy
            if value.is_complex():
                raise BadInputError(f"input {name!r} has dtype {value.dtype}: only float, int and bool tensors "
                                    "can be fed")
            t = value.detach().to(self._device)
            return t.to(self._dtype) if t.is_floating_point() else t
        arr = np.asarray(value)
        if arr.dtype.kind not in "fiub":
            raise BadInputError(f"input {name!r} has dtype {arr.dtype}: only float, int and bool arrays can be fed")
        arr = np.ascontiguousarray(arr)
        if not arr.flags.writeable:  # a read-only array (a memory-mapped reference, say): torch wants to own one
            arr = arr.copy()
        t = torch.from_numpy(arr).to(self._device)
        if t.is_floating_point():
            t = t.to(self._dtype)
        return t

    def _map_outputs(self, result) -> dict[str, np.ndarray]:
        names = self.output_names
        if isinstance(result, dict) and all(n in result for n in names):
            leaves = [(n, result[n]) for n in names]
        else:
            flat = [t for _, t in tensors_in(result)] or flatten(result)
            if len(flat) != len(names):
                raise BadInputError(
                    f"the module returned {len(flat)} tensor(s) but {len(names)} output name(s) were given "
                    f"({', '.join(names)}); name every output, in order"
                )
            leaves = list(zip(names, flat))
        out = {}
        for n, v in leaves:
            if not is_tensor(v):
                raise BadInputError(f"output {n!r} is a {type(v).__name__}, not a tensor")
            out[n] = device_copy(v, copy=False) if self._on_device else to_numpy(v)
        return out


def _cpu_half_mode() -> str:
    import os

    mode = os.environ.get(CPU_HALF_ENV, "emulated").strip().lower() or "emulated"
    if mode not in ("emulated", "native"):
        raise BadInputError(f"{CPU_HALF_ENV}={mode!r}: use 'emulated' (default) or 'native'")
    return mode


def _site_tensor(output, site: Site):
    """The tensor at a probe's path in its call's output (a plain module name: the first tensor in it)."""
    if not site.path:
        return first_tensor(output)
    value = at_path(output, site.path)
    return value if is_tensor(value) else None


def _attention(spec: BackendSpec, emulated: bool) -> str:
    from cp_debug.backends.pytorch.torch_emulation import attention_setting

    return attention_setting(spec, emulated)
