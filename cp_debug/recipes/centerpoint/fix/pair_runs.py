"""Runs of CenterPoint ONNX pairs over one frame set (ONNX Runtime, the staged pipeline), with the work one run
shares with an earlier one done once.

A fix runs many pairs on the same frames: the FP32 reference, then per candidate the pair with the candidate's
set kept in FP32, then the verification's reference, plain and fixed pairs. Most candidates change one file only
(a set in the backbone leaves the voxel encoder the plain FP16 one), the glue before the encoder depends on the
frame alone, and verification on the search's frames runs pairs the search ran. So, per `PairRuns` (one frame
set, one device):
- each frame's front (voxels and decorated features, `pipeline.make_front`) is made once (while the fronts kept
  fit FRONT_BYTES; beyond, made per run as before);
- a voxel encoder's outputs on a frame are kept under the sha256 of the encoder graph's bytes (the last ENCODERS
  graphs): a run with the same bytes takes them, and opens no encoder session where every frame is known;
- a pair's head maps per frame are kept where the caller asks (`keep=True`, until `forget`): the FP32 reference,
  the plain candidate and the search's passing set are what verification on the search's frames runs again.
A stage's outputs depend on its graph's bytes and its input only (one runner spec: `ort-DEVICE`): what is taken is
what a new session would give. A kept output keeps the seconds its stage took when it was made, so a lane's
latency figures are those of the runs that made its outputs.

On the planted tiny fix (`tests/fix/test_fix_precision.py`: 11 search runs on 1 frame, verified on it) the pairs
took 30 sessions, 15 encoder runs, 15 voxelizations and 15 backbone runs; with this, 17, 4, 1 and 13. (The
verification's FP32 reference still runs: the ranking pass's graph import, `gs.import_onnx` in
`fp16.fp16_candidates`, gives the FP32 encoder's Constant tensors an empty name in place, so its bytes are no
longer those the search's reference ran.)
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Sequence

import numpy as np

from cp_debug.data.frames import FrameSet

FRONT_BYTES = 512 * 2**20  # fronts kept per PairRuns; at awml-base's voxel cap (96000 x 32 points) one is up to ~0.2 GB
ENCODERS = 4  # voxel encoder graphs whose outputs are kept (the FP32 one, the plain FP16 one, a candidate's few)


class PairRuns:
    """`heads(encoder, backbone, indices)`: (head maps per frame, stage seconds per frame) of the pair on
    `frames`, as `ort_pair_heads` gives them, with what earlier runs made taken (see the module)."""

    def __init__(self, cfg, frames: FrameSet, device: str = "cpu"):
        self.cfg, self.frames, self.device = cfg, frames, device
        self._fronts: dict[int, object] = {}
        self._front_bytes = 0
        self._encoded: OrderedDict[str, dict[int, tuple[dict, float]]] = OrderedDict()
        self._heads: dict[tuple[str, str], dict[int, tuple[dict, dict]]] = {}
        self.runs = {"sessions": 0, "encoder_runs": 0, "backbone_runs": 0}  # what was made, for tests and notes

    def serves(self, frames: FrameSet, device: str) -> bool:
        """Whether runs on `frames` (the very same set) on `device` can be taken from this one."""
        return frames is self.frames and device == self.device

    def heads(self, encoder, backbone, indices: Sequence[int] | None = None, *, keep: bool = False
              ) -> tuple[list[dict[str, np.ndarray]], dict[str, list[float]]]:
        """The pair's (head maps per frame, stage seconds per frame) on `indices` (default every frame);
        `keep`: the head maps are kept for later runs of this pair (until `forget`)."""
        from contextlib import ExitStack

        from cp_debug.models.centerpoint.model import STAGE_BACKBONE, STAGE_VOXEL_ENCODER
        from cp_debug.recipes.centerpoint.pipeline import run_pipeline

        indices = range(len(self.frames)) if indices is None else indices
        pair = (self._digest(encoder), self._digest(backbone))
        encoded = self._encoded_by(pair[0])
        known = self._heads.get(pair, {})
        if keep:
            self._heads[pair] = known
        heads, seconds = [], {STAGE_VOXEL_ENCODER: [], STAGE_BACKBONE: []}
        with ExitStack() as stack:
            runners: dict[str, object] = {}

            def runner(stage: str, model):
                if stage not in runners:  # opened on the first frame that needs it, kept for the frames after
                    runners[stage] = stack.enter_context(self._runner(model))
                return runners[stage]

            for i in indices:
                got = known.get(i)
                if got is None:
                    enc = _Known(encoded[i][0]) if i in encoded else _Recorded(runner(STAGE_VOXEL_ENCODER, encoder))
                    res = run_pipeline(self.cfg, None, enc, runner(STAGE_BACKBONE, backbone), capture=False,
                                       front=self._front(i))
                    self.runs["backbone_runs"] += 1
                    if isinstance(enc, _Recorded):
                        self.runs["encoder_runs"] += 1
                        encoded[i] = (enc.out, res.timings.get(STAGE_VOXEL_ENCODER, 0.0))
                    got = (res.head, {STAGE_VOXEL_ENCODER: encoded[i][1],
                                      STAGE_BACKBONE: res.timings.get(STAGE_BACKBONE, 0.0)})
                    if keep:
                        known[i] = got
                heads.append(got[0])
                for stage in seconds:
                    seconds[stage].append(got[1][stage])
        return heads, seconds

    def forget(self, encoder, backbone) -> None:
        """Drop the kept head maps of the pair (a candidate that failed, a set replaced by a smaller one)."""
        self._heads.pop((self._digest(encoder), self._digest(backbone)), None)

    def _runner(self, model):
        from cp_debug.backends import make_runner
        from cp_debug.backends.spec import BackendSpec

        self.runs["sessions"] += 1
        # On the CPU the runner rounds every float16 tensor after its node (`precision.half_storage`), as a GPU
        # stores it: ORT's CPU provider alone would keep activations between float16 Convs in float32 (no overflow).
        return make_runner(BackendSpec.parse(f"ort-{self.device}"), onnx_model=model)

    def _front(self, i: int):
        """Frame `i`'s front (on the CPU, where the pipeline's glue runs), kept while FRONT_BYTES allow."""
        if i in self._fronts:
            return self._fronts[i]
        from cp_debug.recipes.centerpoint.pipeline import make_front

        front = make_front(self.cfg, self.frames.frames[i].load(self.cfg).points)
        size = sum(int(t.nbytes) for t in (front.voxels.voxels, front.voxels.num_points, front.voxels.coors,
                                           front.features))
        if self._front_bytes + size <= FRONT_BYTES:
            self._fronts[i] = front
            self._front_bytes += size
        return front

    def _encoded_by(self, key: str) -> dict[int, tuple[dict, float]]:
        """The kept outputs of the encoder graph `key` (frame -> (outputs, seconds)); the oldest graph's dropped
        beyond ENCODERS."""
        if key in self._encoded:
            self._encoded.move_to_end(key)
        else:
            self._encoded[key] = {}
            while len(self._encoded) > ENCODERS:
                self._encoded.popitem(last=False)
        return self._encoded[key]

    @staticmethod
    def _digest(model) -> str:
        """sha256 of a stage graph's bytes now (a ModelProto's serialization, a path's file): taken at each run, so
        a graph changed in place is a new key."""
        import hashlib

        from cp_debug.files import sha256_file

        if isinstance(model, (str, Path)):
            return sha256_file(model)
        return hashlib.sha256(model.SerializeToString()).hexdigest()


class _Known:
    """A voxel encoder whose outputs on this frame are known: `run_pipeline` takes them as a runner's."""

    def __init__(self, out: dict):
        self.out = out

    def infer(self, feed: dict) -> dict:
        return self.out


class _Recorded:
    """An active runner whose last outputs are kept (`out`)."""

    def __init__(self, runner):
        self.runner, self.out = runner, None

    def infer(self, feed: dict) -> dict:
        self.out = self.runner.infer(feed)
        return self.out


def ort_pair_heads(cfg, encoder, backbone, frames: FrameSet, indices: Sequence[int] | None = None, *,
                   device: str = "cpu") -> tuple[list[dict[str, np.ndarray]], dict[str, list[float]]]:
    """(head maps per frame, stage seconds per frame) of an ONNX pair (paths or ModelProtos) run by ONNX Runtime
    in the staged pipeline (the shared torch glue between the two files). A fix running several pairs on the same
    frames keeps one `PairRuns` instead."""
    return PairRuns(cfg, frames, device).heads(encoder, backbone, indices)
