"""Thin runners for the two CenterPoint stages: a torch module or an ONNX file behind the Runner contract.

The full-featured backends live in cp_debug/backends; these are enough for the staged pipeline and can be
swapped for any object with `infer(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from cp_debug.backends.base import Runner
from cp_debug.backends.spec import Capability
from cp_debug.errors import BackendUnavailableError, BadInputError


def _check_feed(name: str, feed: dict, input_names: Sequence[str]) -> None:
    missing = [n for n in input_names if n not in feed]
    if missing:
        raise BadInputError(
            f"runner {name!r} needs input(s) {', '.join(input_names)}; the feed lacks {', '.join(missing)} "
            f"(it has {', '.join(feed) or 'nothing'})"
        )


class TorchStageRunner(Runner):
    """Runs `module(*inputs)` under inference_mode on `device`; outputs are named by `output_names` in order
    (numpy from `infer`, torch tensors on `device` from `infer_device`)."""

    capabilities = frozenset({Capability.DEVICE_TENSORS})

    def __init__(self, module, input_names: Sequence[str], output_names: Sequence[str], device: str = "cpu",
                 name: str | None = None):
        super().__init__(name or f"torch-{device}")
        self.module = module
        self.input_names = tuple(input_names)
        self.output_names = tuple(output_names)
        self.device = device

    def _activate(self) -> None:
        import torch

        if str(self.device).startswith("cuda") and not torch.cuda.is_available():
            raise BackendUnavailableError("torch on CUDA was requested but torch sees no CUDA device; use --device cpu")
        self._torch = torch
        self.module.to(self.device).eval()

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self._torch
        _check_feed(self.name, feed, self.input_names)
        args = [torch.from_numpy(np.ascontiguousarray(feed[n])).to(self.device) for n in self.input_names]
        return {n: o.detach().cpu().numpy() for n, o in self._forward(args).items()}

    def _infer_device(self, feed: dict) -> dict:
        _check_feed(self.name, feed, self.input_names)
        return {n: o.detach() for n, o in self._forward([feed[n].to(self.device) for n in self.input_names]).items()}

    def _forward(self, args: list) -> dict:
        torch = self._torch
        with torch.inference_mode():
            outs = self.module(*args)
        if isinstance(outs, torch.Tensor):
            outs = (outs,)
        if isinstance(outs, dict):
            outs = tuple(outs[n] for n in self.output_names)
        if len(outs) != len(self.output_names):
            raise BadInputError(
                f"runner {self.name!r}: the module returned {len(outs)} output(s) but {len(self.output_names)} "
                f"name(s) were given ({', '.join(self.output_names)})"
            )
        return dict(zip(self.output_names, outs))

    def settings(self) -> dict:
        return {"device": self.device}


class OrtStageRunner(Runner):
    """An onnxruntime InferenceSession on an ONNX file; the session is created on activate()."""

    def __init__(self, onnx_path: str | Path, providers: Sequence[str] = ("CPUExecutionProvider",),
                 name: str | None = None):
        super().__init__(name or f"ort:{Path(onnx_path).name}")
        self.onnx_path = Path(onnx_path)
        self.providers = tuple(providers)
        self.session = None

    def _activate(self) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise BackendUnavailableError("onnxruntime is not installed: pip install onnxruntime") from None
        if not self.onnx_path.is_file():
            raise BadInputError(f"ONNX file {self.onnx_path} does not exist (run `cpdebug export` first)")
        available = ort.get_available_providers()
        missing = [p for p in self.providers if p not in available]
        if missing:
            raise BackendUnavailableError(
                f"onnxruntime here lacks {', '.join(missing)} (it has {', '.join(available)}); "
                "install onnxruntime-gpu for CUDAExecutionProvider"
            )
        from cp_debug.backends.ort.ort_session import _BAD_MODEL, exact_int8, first_line, ort_errors
        from cp_debug.ort_sessions import open_session, session_options

        so = session_options()
        exact_int8(so)  # a Q/DQ file: exact integer products on CPUs without VNNI
        try:
            self.session = open_session(str(self.onnx_path), so, self.providers)
        except ort_errors(*_BAD_MODEL) as err:  # the file, not the machine: anything else propagates
            raise BadInputError(f"ONNX Runtime cannot load {self.onnx_path}: {first_line(err)}; is it a complete "
                                "ONNX file of this stage (`cpdebug export` writes one)?") from err
        self.input_names = tuple(i.name for i in self.session.get_inputs())
        self.output_names = tuple(o.name for o in self.session.get_outputs())
        if not self.output_names:
            raise BadInputError(f"{self.onnx_path} has no graph output: nothing to run (re-export it with "
                                "`cpdebug export`)")

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        _check_feed(self.name, feed, self.input_names)
        for inp in self.session.get_inputs():
            shape = np.shape(feed[inp.name])
            fixed = [(i, d) for i, d in enumerate(inp.shape) if isinstance(d, int)]
            if len(shape) != len(inp.shape) or any(shape[i] != d for i, d in fixed):
                raise BadInputError(
                    f"{self.onnx_path.name} takes {inp.name} of shape {list(inp.shape)}, got {list(shape)}: "
                    "was it exported for another preset?"
                )
        outs = self.session.run(None, {n: np.ascontiguousarray(feed[n]) for n in self.input_names})
        return dict(zip(self.output_names, outs))

    def _deactivate(self) -> None:
        self.session = None

    def settings(self) -> dict:
        return {"providers": list(self.providers), "onnx": str(self.onnx_path)}


def torch_stage_runner(module, input_names: Sequence[str], output_names: Sequence[str],
                       device: str = "cpu") -> TorchStageRunner:
    return TorchStageRunner(module, input_names, output_names, device)


def ort_stage_runner(onnx_path: str | Path, providers: Sequence[str] = ("CPUExecutionProvider",)) -> OrtStageRunner:
    return OrtStageRunner(onnx_path, providers)


def torch_stage_runners(model, *, device: str = "cpu",
                        rot_y_axis_reference: bool = False) -> tuple[TorchStageRunner, TorchStageRunner]:
    """(voxel encoder, backbone/neck/head) runners on a CenterPoint model's export stages."""
    from cp_debug.models.centerpoint.model import (
        BACKBONE_INPUTS,
        HEAD_OUTPUTS,
        STAGE_BACKBONE,
        STAGE_VOXEL_ENCODER,
        VOXEL_ENCODER_INPUTS,
        VOXEL_ENCODER_OUTPUTS,
        BackboneNeckHeadStage,
        VoxelEncoderStage,
    )

    return (
        TorchStageRunner(VoxelEncoderStage(model), VOXEL_ENCODER_INPUTS, VOXEL_ENCODER_OUTPUTS, device,
                         name=f"torch-{device}:{STAGE_VOXEL_ENCODER}"),
        TorchStageRunner(BackboneNeckHeadStage(model, rot_y_axis_reference), BACKBONE_INPUTS, HEAD_OUTPUTS, device,
                         name=f"torch-{device}:{STAGE_BACKBONE}"),
    )


def ort_stage_runners(onnx_dir: str | Path,
                      providers: Sequence[str] = ("CPUExecutionProvider",)) -> tuple[OrtStageRunner, OrtStageRunner]:
    """(voxel encoder, backbone/neck/head) runners on the two files `export_onnx` writes into `onnx_dir`."""
    from cp_debug.recipes.centerpoint.export import BACKBONE_FILE, VOXEL_ENCODER_FILE

    d = Path(onnx_dir)
    return OrtStageRunner(d / VOXEL_ENCODER_FILE, providers), OrtStageRunner(d / BACKBONE_FILE, providers)
