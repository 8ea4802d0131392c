"""What the kit tests share: a kit copied to damage it, a refusal checked to be one line (exit 2), and bisect run
through the CLI on a kit's frame."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cp_debug.backends.kit import kit_files as kf
from cp_debug.backends.spec import BackendSpec
from cp_debug.errors import BadInputError
from cp_debug.recipes import catalog


def copy_kit(kit: Path, dest: Path) -> Path:
    """A copy of `kit` (to damage), with the per-process cache of opened kits forgotten."""
    shutil.copytree(kit, dest)
    kf._OPENED.clear()
    return dest


def refused(kit: Path, words: str) -> None:
    """`trt-fp16@kit` is refused before any run, in one line holding `words`, exit code 2."""
    from cp_debug.backends.factory import check_available

    with pytest.raises(BadInputError) as err:
        check_available(BackendSpec.parse(f"trt-fp16@{kit}"))
    assert words in str(err.value) and "\n" not in str(err.value) and err.value.exit_code == 2


def bisect_cli(kit: Path, ckpt: Path, report: Path):
    """`cpdebug bisect --backends torch,trt-fp16@kit` on the kit's first frame (the tiny preset), its JSON to `report`:
    (exit code, the output's non-empty lines)."""
    from typer.testing import CliRunner

    from cp_debug.cli.main import app

    proc = CliRunner().invoke(app, ["bisect", "--preset", "tiny", "--checkpoint", str(ckpt), "--points",
                                    str(kit / "frames" / "frame_000.npy"), "--backends", f"torch,trt-fp16@{kit}",
                                    "--no-noise-floor", "--json", str(report), "--quiet"])
    return proc.exit_code, [ln for ln in proc.output.splitlines() if ln.strip()]


def planted_kit(tmp: Path, convert=None) -> tuple[Path, Path, Path, Path]:
    """(kit, deployed dir, checkpoint, points file): the planted FP16 overflow (`pts_neck.deblocks.0` peaks at 2e5)
    on a scan of the tiny preset, its pair deployed as cp_debug exports it (each stage's ONNX through
    `convert(stage name, model)` where given), and an FP16 kit written for that pair."""
    import numpy as np
    import onnx

    from cp_debug.kit.writer import KitRequest, write_kit
    from cp_debug.models.centerpoint.presets import get_preset
    from cp_debug.lidar.record import ModelRecord
    from cp_debug.lidar.synthetic import synthetic_scene
    from cp_debug.recipes.centerpoint.subject import centerpoint_subject
    from tests.fix.planted import local_overflow_checkpoint

    ckpt = local_overflow_checkpoint(tmp / "planted.pth")
    points = tmp / "scan.npy"
    np.save(points, synthetic_scene(3, get_preset("tiny")).points[::2].astype(np.float32))
    deployed = tmp / "deploy"
    deployed.mkdir()
    # the default trace side, as the kit writer's subject and the tests' bisects take it: one export of each stage,
    # the others read it from the session's cache
    for st in centerpoint_subject("tiny", checkpoint=ckpt, points=points).stages:
        model = st.onnx() if convert is None else convert(st.name, st.onnx())
        onnx.save(model, str(deployed / f"{st.name}.onnx"))
    kit = tmp / "kit"
    write_kit(KitRequest(ModelRecord.of("tiny", checkpoint=ckpt), kit, onnx_dir=deployed, source_kind="deployed",
                         points=(points,), precisions=("fp16",), recipe=catalog.recipe()))
    return kit, deployed, ckpt, points
