"""Backend specs: `framework[-device][-precision]`, e.g. `torch`, `torch-cuda-tf32`, `ort-cpu-int8`, `trt-fp16`."""

from __future__ import annotations

from dataclasses import dataclass

from cp_debug.errors import BadInputError

FRAMEWORKS = ("torch", "ort", "trt")
DEVICES = ("cpu", "cuda")
PRECISIONS = ("fp32", "tf32", "fp16", "bf16", "int8")

# What each framework can do: (devices, precisions).
_SUPPORT = {
    "torch": (("cpu", "cuda"), ("fp32", "tf32", "fp16", "bf16", "int8")),  # int8: fake quant of a PTQ model
    "ort": (("cpu", "cuda"), ("fp32", "tf32", "fp16", "int8")),
    "trt": (("cuda",), ("fp32", "tf32", "fp16", "bf16", "int8")),
}
_DEFAULT_DEVICE = {"torch": "cpu", "ort": "cpu", "trt": "cuda"}


@dataclass(frozen=True)
class BackendSpec:
    framework: str
    device: str
    precision: str

    @classmethod
    def parse(cls, text: str) -> "BackendSpec":
        parts = [p for p in text.strip().lower().split("-") if p]
        if not parts or parts[0] not in FRAMEWORKS:
            raise BadInputError(
                f"unknown backend spec {text!r}: it must start with one of {', '.join(FRAMEWORKS)} "
                "(e.g. torch, torch-cuda-tf32, ort-cpu-int8, trt-fp16)"
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
            raise BadInputError(f"bad backend spec {text!r}: TF32 exists on CUDA devices only (try {framework}-cuda-tf32)")
        return cls(framework, device, precision)

    def __str__(self) -> str:
        if self.framework == "trt":
            return f"trt-{self.precision}"
        return f"{self.framework}-{self.device}-{self.precision}"


def parse_backends(text: str) -> list[tuple[str, BackendSpec]]:
    """Parse `REF,CAND[,CAND…]` into (label as typed, spec) pairs; at least two are required."""
    labels = [t.strip() for t in text.split(",") if t.strip()]
    if len(labels) < 2:
        raise BadInputError(f"--backends needs a reference and at least one candidate, e.g. torch,ort (got {text!r})")
    if len(set(labels[1:])) != len(labels) - 1:  # the reference may reappear as a candidate (a noise check)
        raise BadInputError(f"--backends lists the same candidate twice: {text!r}")
    return [(label, BackendSpec.parse(label)) for label in labels]
