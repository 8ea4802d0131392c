"""A runner that reads, not runs: `trt-<precision>@KIT` serves the tensors the target computed from a kit
(`cpdebug trt-kit`), keyed by ONNX tensor name like the other ONNX runners, so bisect's probe mapping works unchanged.

`infer(feed)` finds the kit's stage by the feed's input names and the frame by the feed itself: the first stage's
feed is byte for byte a kit input (sha256; bisect on the kit's frame gives it), a later stage's is the candidate's own
upstream output glued, which the target never saw (it ran every stage on the reference's inputs), so the frame is the
nearest kit input of that shape, and the precision report says so. It returns the graph's outputs and the asked-for
tensors the target's results hold (`kit_results.py`: trtexec's dumps or polygraphy's RunResults); the others are
`unobserved()` with the reason (a tensor TensorRT fused away: `trt_dumps_layer_info.FUSED`; a dump missing from the
folder). It cannot run a segment alone: `Capability.TARGET_RESULTS`, and bisect takes ONNX Runtime's local error on
the same segment instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from cp_debug.backends.kit import kit_files as kf
from cp_debug.backends.base import PrecisionReport, Runner
from cp_debug.backends.kit.kit_results import TargetResults, target_results
from cp_debug.backends.spec import BackendSpec, Capability
from cp_debug.errors import BadInputError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import onnx


def check_kit(spec: BackendSpec) -> None:
    """Everything `spec`'s kit must be, checked before a run: its files, what the target ran, every stage's results
    readable and shaped as the reference's (read once, kept for the runners)."""
    kit = kf.open_kit(spec.onnx_dir)
    for stage in kit.manifest.stages:
        target_results(kit, spec.precision, stage)


class KitRunner(Runner):
    """Serves a kit's target results for one stage (`TargetResults`), as an ONNX runner would compute them."""

    capabilities = frozenset({Capability.TARGET_RESULTS})

    def __init__(self, onnx_model: "onnx.ModelProto | str | Path", spec: BackendSpec,
                 extra_outputs: Iterable[str] = ()):
        super().__init__(str(spec))
        assert spec.onnx_dir is not None
        self.spec = spec
        self.model = onnx_model
        self.extra = tuple(dict.fromkeys(extra_outputs))
        self._kit: kf.Kit | None = None
        self._stage: kf.KitStage | None = None
        self._results: TargetResults | None = None
        self._unobserved: dict[str, str] = {}
        self._notes: list[str] = []

    def _activate(self) -> None:
        from cp_debug.graph.model import load_onnx

        self._kit = kf.open_kit(self.spec.onnx_dir)
        model = load_onnx(self.model, check=False)
        names = {i.name for i in model.graph.input} - {t.name for t in model.graph.initializer}
        stage = next((s for s in self._kit.manifest.stages if {t.name for t in s.inputs} == names), None)
        if stage is None:
            raise BadInputError(f"{self.spec}: the kit has no stage fed {sorted(names)} (its stages: "
                                f"{', '.join(s.name for s in self._kit.manifest.stages)})")
        self._stage = stage
        self._results = target_results(self._kit, self.spec.precision, stage)

    def _infer(self, feed: dict[str, "np.ndarray"]) -> dict[str, "np.ndarray"]:
        import numpy as np

        assert self._kit is not None and self._stage is not None and self._results is not None
        frame, how = self._frame(feed)
        got = self._results.frames[frame.id]
        out = {t.name: np.asarray(got[t.name]) for t in self._stage.outputs}
        for name in self.extra:
            if name in got:
                out[name] = np.asarray(got[name])
            elif name not in out:
                self._unobserved[name] = self._results.why_absent(frame.id, name)
        if how not in self._notes:
            self._notes.append(how)
        return out

    def _frame(self, feed: dict[str, "np.ndarray"]) -> tuple[kf.KitFrame, str]:
        """The kit frame `feed` is: by the sha256 of its bytes, else (a later stage, fed the candidate's own upstream
        values) the nearest kit input of the same shape; a first stage fed something else is refused."""
        import numpy as np

        m, stage = self._kit.manifest, self._stage
        arrays = {t.name: np.ascontiguousarray(np.asarray(feed[t.name]), dtype=np.dtype(t.dtype)) for t in stage.inputs}
        for fr in m.frames:
            if all(kf.array_sha256(arrays[t.name]) == t.sha256.get(fr.id) for t in stage.inputs):
                return fr, f"the target's results of frame {fr.id} ({fr.token}), whose input this is byte for byte"
        first = stage.name == m.stages[0].name
        if first:
            raise BadInputError(f"{self.spec}: this input is none of the kit's frames (the kit holds "
                                f"{', '.join(f.id for f in m.frames)}): run on a kit frame, e.g. --points "
                                f"{self._kit.folder / m.frames[0].points}")
        dist = []
        for fr in m.frames:
            if all(arrays[t.name].shape == t.shapes[fr.id] for t in stage.inputs):
                d = sum(_rel_distance(arrays[t.name], self._kit.folder / kf.input_raw(fr.id, stage.name, t.name), t)
                        for t in stage.inputs)
                dist.append((d, fr))
        dist.sort(key=lambda x: x[0])
        if not dist or (len(dist) > 1 and dist[0][0] > 0.5 * dist[1][0]):
            raise BadInputError(f"{self.spec}: the {stage.name} input matches no kit frame clearly: bisect on a kit "
                                f"frame (--points {self._kit.folder / m.frames[0].points})")
        d, fr = dist[0]
        return fr, (f"the target ran this stage on the reference's input of frame {fr.id} ({fr.token}), not on this "
                    f"candidate's own upstream output (relative distance {d:.2g}): its error here is the stage's own")

    def _deactivate(self) -> None:
        self._results = None

    def unobserved(self) -> dict[str, str]:
        return dict(self._unobserved)

    def precision_report(self) -> PrecisionReport | None:
        if self._kit is None or self._results is None:
            return None
        held = self._kit.manifest.held_precision
        ran = self.spec.precision if self.spec.precision != "fp32" else held
        who = ("ONNX Runtime in TensorRT's place (polygraphy --onnxrt): TensorRT itself did not run"
               if self._results.stood_in else f"TensorRT on the target ({self._results.runner_name})")
        notes = [f"read from {self._results.source} — {who}; the file ran holds {ran}", *self._results.notes,
                 *self._notes]
        return PrecisionReport(self.spec.precision, ran, tuple(notes))

    def settings(self) -> dict:
        if self._kit is None:
            return {"kit": str(self.spec.onnx_dir)}
        return {"kit": str(self._kit.folder), "results": str(self._results.source) if self._results else None,
                "runner": self._results.runner_name if self._results else None,
                "kit_written_by": self._kit.manifest.cp_debug, "kit_created": self._kit.manifest.created}


def _rel_distance(value: "np.ndarray", raw: Path, t: kf.KitTensor) -> float:
    import numpy as np

    ref = np.fromfile(raw, dtype=np.dtype(t.dtype)).reshape(value.shape).astype(np.float64)
    den = float(np.linalg.norm(ref)) or 1.0
    return float(np.linalg.norm(value.astype(np.float64) - ref)) / den
