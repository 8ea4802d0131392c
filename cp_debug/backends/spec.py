"""Backend specs: `framework[-device][-precision][@DIR]`, e.g. `torch`, `torch-cuda-tf32`, `ort-cpu-int8`,
`ort-cpu-fp8`, `ort-cpu-nvfp4`, `trt-fp16`, `trt-rtx-fp16` (TensorRT for RTX: the framework's name is `trt-rtx`).

`SPEC@DIR` runs the user's own deployed ONNX files from DIR (one `<stage>.onnx` per stage, as AWML's exporter
names them: `pts_voxel_encoder.onnx`, `pts_backbone_neck_head.onnx`) instead of cp_debug's export: `ort@deploy/onnx`,
`trt-fp16@DIR`. The files' own precision is kept; a precision in the spec converts them as the built-in path does.

What a runner can do beyond the contract (`base.Runner`) is declared here, once per framework (`CAPABILITIES`):
a caller asks `spec.can(...)` before a runner exists and `runner.can(...)` after, never the framework's name.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

from cp_debug.errors import BadInputError

FRAMEWORKS = ("torch", "ort", "trt", "trt-rtx")
TENSORRT = ("trt", "trt-rtx")  # the frameworks that build TensorRT engines (TensorRT 10/11, TensorRT for RTX)
DEVICES = ("cpu", "cuda")
PRECISIONS = ("fp32", "tf32", "fp16", "bf16", "int8", "fp8", "nvfp4", "mxfp8")
# the precisions whose scales a calibration sets: the runner takes calibration feeds (`calib_feeds`); MXFP8's block
# scales are the blocks' own (no tensor scale), NVFP4's sit over a calibrated per-tensor scale
CALIBRATED = ("int8", "fp8", "nvfp4")
# the precisions no runtime here runs: written in float32 ONNX (`precision/block_quant.py`), labelled as such
EMULATED_PRECISIONS = ("nvfp4", "mxfp8")

# What each framework can do: (devices, precisions).
_SUPPORT = {
    # int8: fake quant of a PTQ model; fp8: E4M3 fake quant of every Linear / Conv (on CUDA sm_89+ nn.Linear as
    # real FP8 GEMMs: `torch_fp8.py`)
    "torch": (("cpu", "cuda"), ("fp32", "tf32", "fp16", "bf16", "int8", "fp8")),
    # fp8: ModelOpt-style E4M3 Q/DQ written here (`precision/fp8.py`); nvfp4 / mxfp8: emulated in float32 ONNX
    "ort": (("cpu", "cuda"), ("fp32", "tf32", "fp16", "int8", "fp8", "nvfp4", "mxfp8")),
    "trt": (("cuda",), ("fp32", "tf32", "fp16", "bf16", "int8")),
    # TensorRT for RTX is strongly typed only (precision from the ONNX), and cp_debug writes no BF16 ONNX
    "trt-rtx": (("cuda",), ("fp32", "tf32", "fp16", "int8")),
}
_DEFAULT_DEVICE = {"torch": "cpu", "ort": "cpu", "trt": "cuda", "trt-rtx": "cuda"}


class Capability(str, enum.Enum):
    """An optional ability of a runner, beyond activate / infer / deactivate (the contract test checks each)."""

    INFER_SOME = "infer_some"  # `infer_some(feed, extra)`: one session exposing many tensors, read a part at a time
    RUN_SUBMODULE = "run_submodule"  # `run_submodule(name, inputs)`: one submodule alone on captured inputs
    STREAM_PROBES = "stream_probes"  # `on_probe` / `capture_inputs`: module probes handed over as they are produced
    QDQ_MODEL = "qdq_model"  # `int8_model=`: a given Q/DQ graph run as it is (the --int8 DIR's export)
    PTQ_MODEL = "ptq_model"  # runs the PTQ model of --int8 DIR as given (fake quantizers, or its Q/DQ export)
    KEEP_FP32_NODES = "keep_fp32_nodes"  # `keep_fp32_nodes=`: ONNX nodes left in FP32 by the FP16 conversion
    LOCKSTEP = "lockstep"  # its stages can run segment by segment beside the reference (`bisect/stages/lockstep.py`)
    # `infer_device(feed)`: torch tensors in, torch tensors out on the runner's device (CUDA: no host round trip;
    # ONNX Runtime through IO binding); the same numbers as `infer`
    DEVICE_TENSORS = "device_tensors"
    # its values are the target's, read back from a kit (`kit_runner.py`): it runs nothing here, not even a segment
    # alone, so bisect takes ONNX Runtime's local error on the same segment and says so
    TARGET_RESULTS = "target_results"
    # it runs the ONNX file in ONNX Runtime sessions: a deployed file ONNX Runtime refuses as it is written cannot
    # run here, whatever a transform or an emulation would make of it (`ort_load.py`)
    ORT_SESSIONS = "ort_sessions"


CAPABILITIES: dict[str, frozenset[Capability]] = {
    "torch": frozenset({Capability.RUN_SUBMODULE, Capability.STREAM_PROBES, Capability.PTQ_MODEL,
                        Capability.DEVICE_TENSORS}),
    "ort": frozenset({Capability.INFER_SOME, Capability.QDQ_MODEL, Capability.PTQ_MODEL, Capability.KEEP_FP32_NODES,
                      Capability.LOCKSTEP, Capability.DEVICE_TENSORS, Capability.ORT_SESSIONS}),
    "trt": frozenset({Capability.KEEP_FP32_NODES}),
    "trt-rtx": frozenset({Capability.KEEP_FP32_NODES}),
}
KIT_CAPABILITIES = frozenset({Capability.TARGET_RESULTS})  # `trt-*@KIT`: a folder written by `cpdebug trt-kit`


@dataclass(frozen=True)
class BackendSpec:
    framework: str
    device: str
    precision: str
    onnx_dir: Path | None = None  # SPEC@DIR: the user's deployed ONNX files (ort/trt only)
    kit: bool = False  # trt-*@KIT: DIR is a kit (`cpdebug trt-kit`) whose results came back from the target

    @classmethod
    def parse(cls, text: str) -> "BackendSpec":
        head, at, where = text.strip().partition("@")
        parts = [p for p in head.lower().split("-") if p]
        if parts[:2] == ["trt", "rtx"]:  # the one framework whose name holds a dash
            parts = ["trt-rtx"] + parts[2:]
        if not parts or parts[0] not in FRAMEWORKS:
            raise BadInputError(
                f"unknown backend spec {text!r}: it must start with one of {', '.join(FRAMEWORKS)} "
                "(e.g. torch, torch-cuda-tf32, ort-cpu-int8, trt-fp16, trt-rtx-fp16)"
            )
        framework, rest = parts[0], parts[1:]
        device = precision = None
        for p in rest:
            if p in DEVICES and device is None and precision is None:
                device = p
            elif p in PRECISIONS and precision is None:
                precision = p
            else:
                raise BadInputError(
                    f"bad backend spec {text!r}: {p!r} is not a device ({'/'.join(DEVICES)}) or precision "
                    f"({'/'.join(PRECISIONS)}) in the right place; the grammar is framework[-device][-precision]"
                )
        device = device or _DEFAULT_DEVICE[framework]
        precision = precision or "fp32"
        devices, precisions = _SUPPORT[framework]
        if device not in devices:
            raise BadInputError(f"bad backend spec {text!r}: {framework} runs on {'/'.join(devices)} only")
        if precision not in precisions:
            raise BadInputError(
                f"bad backend spec {text!r}: {framework} supports {'/'.join(precisions)}, not {precision}"
            )
        if precision == "tf32" and device != "cuda":
            raise BadInputError(f"bad backend spec {text!r}: TF32 exists on CUDA devices only (try "
                                f"{framework}-cuda-tf32)")
        if at and framework == "torch":
            raise BadInputError(f"bad backend spec {text!r}: @DIR names deployed ONNX files, which torch cannot run; "
                                "use ort@DIR or trt@DIR")
        onnx_dir = _onnx_dir(text, head, where) if at else None
        # a kit holds trtexec's / polygraphy's results from the target; trt-rtx builds its own engine of DIR's files
        kit = framework == "trt" and onnx_dir is not None and (onnx_dir / "manifest.json").is_file()
        return cls(framework, device, precision, onnx_dir, kit)

    @property
    def is_torch(self) -> bool:
        """Runs the PyTorch module: its probes are keyed by module name (not by ONNX tensor) and it needs the
        module, not an ONNX export."""
        return self.framework == "torch"

    @property
    def is_tensorrt(self) -> bool:
        """Builds a TensorRT engine: TensorRT 10/11 (`trt-*`) or TensorRT for RTX (`trt-rtx-*`)."""
        return self.framework in TENSORRT

    @property
    def calibrated(self) -> bool:
        """Its precision's scales come from a calibration (INT8, FP8): its runner takes calibration feeds."""
        return self.precision in CALIBRATED

    @property
    def emulated(self) -> bool:
        """Its precision's format is emulated in float32 (NVFP4, MXFP8): no runtime here runs it on hardware."""
        return self.precision in EMULATED_PRECISIONS

    @property
    def runs_onnx(self) -> bool:
        """Runs an ONNX graph (ONNX Runtime, TensorRT): its probes are tensors found through the probe map."""
        return not self.is_torch

    @property
    def capabilities(self) -> frozenset[Capability]:
        """What this spec's runner can do beyond the contract (`CAPABILITIES`; a kit's: `KIT_CAPABILITIES`)."""
        return KIT_CAPABILITIES if self.kit else CAPABILITIES[self.framework]

    def can(self, capability: Capability) -> bool:
        return capability in self.capabilities

    def __str__(self) -> str:
        base = (f"{self.framework}-{self.precision}" if self.is_tensorrt
                else f"{self.framework}-{self.device}-{self.precision}")
        return f"{base}@{self.onnx_dir}" if self.onnx_dir is not None else base


# what a SPEC@DIR folder holds, whichever model: the spec is read before the model is known
_DEPLOYED = ("the deployed ONNX file(s): the model's own file for --torch / --onnx, one a stage for a recipe "
             "(CenterPoint: pts_voxel_encoder.onnx and pts_backbone_neck_head.onnx)")


def _onnx_dir(text: str, head: str, where: str) -> Path:
    """The DIR of `SPEC@DIR`: an existing folder holding ONNX files (which file each stage takes is checked when
    the subject's stages are known), or a one-stage model's .onnx file itself (`SPEC@FILE.onnx`)."""
    if not head.strip() or not where.strip():
        raise BadInputError(f"bad backend spec {text!r}: write SPEC@DIR, e.g. ort@deploy/onnx or trt-fp16@deploy/onnx")
    path = Path(where.strip()).expanduser()
    if path.is_file() and path.suffix.lower() == ".onnx":  # a one-stage model's file itself (`ort@model_int8.onnx`)
        return path
    if not path.is_dir():
        raise BadInputError(f"bad backend spec {text!r}: {path} is neither an .onnx file nor a folder (a folder "
                            f"should hold {_DEPLOYED})")
    if not any(path.glob("*.onnx")):
        raise BadInputError(f"bad backend spec {text!r}: {path} holds no .onnx file (it should hold {_DEPLOYED})")
    return path


@dataclass(frozen=True)
class BackendsRule:
    """What one command's `--backends` takes: how many specs, and whether one may come twice.

    Every command reads its list with `parse_backends(text, rule=...)`; the rules are side by side below, and a
    command whose rule is not `REF_CANDIDATES` says so in its `--backends` help (`form`).
    """

    form: str = "REF,CAND[,CAND…]"  # the shape, in the messages and the help
    least: int = 2
    most: int | None = None
    reference_again: bool = False  # the reference may come back as a candidate (a noise check: ort,ort)
    example: str = "torch,ort"
    hint: str = ""  # after the form when too few or too many are given, e.g. " or a --detections file"

    def check(self, labels: list[str], text: str) -> None:
        """A BadInputError, in one line, when `labels` (as typed in `text`) break the rule."""
        if not labels:
            raise BadInputError(f"--backends is empty: give {self.form}, e.g. {self.example}")
        if len(labels) < self.least or (self.most is not None and len(labels) > self.most):
            raise BadInputError(f"--backends takes {self.form}{self.hint}, e.g. {self.example} (got {text!r})")
        distinct = labels[1:] if self.reference_again else labels
        if len(set(distinct)) != len(distinct):
            what = "the same candidate" if self.reference_again else "a backend"
            raise BadInputError(f"--backends lists {what} twice: {text!r}")


REF_CANDIDATES = BackendsRule()  # a reference and one or more candidates, no spec twice (eval, sweep)
NOISE_CHECK = BackendsRule(reference_again=True)  # bisect: `ort,ort` runs the reference against itself
REF_CAND = BackendsRule(form="REF,CAND", most=2, example="torch,ort-cpu-fp16")  # fix: one reference, one candidate
SPECS = BackendsRule(form="SPEC[,SPEC…]", least=1)  # bench: backends timed side by side, no reference


def parse_backends(text: str, *, rule: BackendsRule = REF_CANDIDATES) -> list[tuple[str, BackendSpec]]:
    """Parse a comma-separated `--backends` into (label as typed, spec) pairs, checked against `rule`."""
    labels = [t.strip() for t in text.split(",") if t.strip()]
    rule.check(labels, text)
    return [(label, BackendSpec.parse(label)) for label in labels]
