"""A Rerun recording (`--rrd FILE`) of a bisect or a sweep, for the viewer LiDAR teams already use (tier4's
autoware-ml visualises with Rerun): one time point per frame on the `frame` timeline, and per frame

- `scan`: the points (Points3D), `truth`: the ground truth (Boxes3D, green) where the frame has it;
- `boxes/<backend>`: each backend's boxes (Boxes3D: centre, size, yaw as a rotation about z; reference blue,
  candidates red), labelled by class and score;
- `bev/<candidate>/<map>`: the BEV maps of `report/bev.py` (|Δ score| per class, reg/height/dim/rot/vel, the largest
  |Δ score| with the peak flips) as textured quads placed in metres under the scan (z = -0.1 m and below), each with
  its raw values as a Tensor (`…/values`); `peakflip/<candidate>`: the flipped peaks as labelled points;
- `probes/<candidate>`: the per-probe error table (markdown), and `errors/<candidate>/<probe>`: the probe's rel. RMS
  error as a scalar series over the frames.

The file is written by Rerun's own file sink (`RecordingStream.save`) into a temporary file, then moved onto FILE
whole (`files.write_atomic`); no viewer is started. `rerun-sdk` is an optional extra, imported here only.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cp_debug.errors import BadInputError

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.bisect.result import BisectReport
    from cp_debug.data.frames import GroundTruth
    from cp_debug.report.bev import BevMaps

RERUN_HINT = "--rrd needs the Rerun SDK: pip install 'cp-debug[rerun]' (or pip install rerun-sdk)"
APPLICATION = "cp_debug"
TIMELINE = "frame"
COLOURS = {"reference": (21, 101, 192), "candidate": (211, 47, 47), "truth": (46, 125, 50),
           "lost": (255, 152, 0), "added": (224, 64, 251), "cut": (255, 235, 59)}


def check_rerun() -> None:
    """A BadInputError with the install line where rerun-sdk is missing (before anything runs)."""
    from importlib.util import find_spec

    if find_spec("rerun") is None:
        raise BadInputError(RERUN_HINT)


@dataclass(frozen=True)
class ProbeRow:
    """One row of the per-probe error table of a frame."""

    probe: str
    rel_max: float  # max |Δ| / max |ref|
    rel_rmse: float
    status: str


class RerunWriter:
    """A recording written whole to `path` on `close()` (use as a context manager: nothing is left on an error)."""

    def __init__(self, path: str | os.PathLike, name: str):
        from cp_debug.imports import optional

        check_rerun()
        rr = optional("rerun", RERUN_HINT, label="rerun-sdk", error=BadInputError)

        self._rr = rr
        self.path = Path(path)
        self._tmp = tempfile.mkdtemp(prefix="cpdebug-rrd-")
        self._file = os.path.join(self._tmp, "recording.rrd")
        self.rec = rr.RecordingStream(APPLICATION, recording_id=name)
        self.rec.save(self._file)
        self.frames = 0

    def __enter__(self) -> RerunWriter:
        return self

    def __exit__(self, kind, *_exc) -> None:
        self.close(write=kind is None)

    def close(self, write: bool = True) -> Path | None:
        """Flush the file sink and move the recording onto `path` (whole); `write=False` drops it."""
        from cp_debug.files import write_atomic

        try:
            self.rec.flush()
            self.rec.disconnect()
            if write:
                with open(self._file, "rb") as src:
                    return write_atomic(self.path, lambda f: shutil.copyfileobj(src, f))
            return None
        finally:
            shutil.rmtree(self._tmp, ignore_errors=True)

    # -- what a frame holds -----------------------------------------------------------------------------------
    def frame(self, index: int, token: str) -> None:
        """Everything logged next belongs to frame `index` (its token as a text log)."""
        self.rec.set_time(TIMELINE, sequence=int(index))
        self.rec.log("frame", self._rr.TextLog(f"frame {index}: {token}"))
        self.frames += 1

    def scan(self, points: np.ndarray, truth: GroundTruth | None, class_names: tuple[str, ...]) -> None:
        rr = self._rr
        pts = np.asarray(points, dtype=np.float32)[:, :3]
        self.rec.log("scan", rr.Points3D(pts, radii=0.04, colors=_height_colours(pts[:, 2])))
        if truth is not None and len(truth.boxes):
            self.rec.log("truth", self._boxes(truth.boxes, None, truth.labels, class_names, COLOURS["truth"]))

    def boxes(self, lane: str, boxes: np.ndarray, scores: np.ndarray | None, labels: np.ndarray,
              class_names: tuple[str, ...], reference: bool) -> None:
        colour = COLOURS["reference" if reference else "candidate"]
        self.rec.log(self._path("boxes", lane), self._boxes(boxes, scores, labels, class_names, colour))

    def bev(self, label: str, maps: BevMaps) -> None:
        """Every map of `maps` as a textured quad in metres (and its values as a Tensor); the flipped peaks as
        labelled points."""
        from cp_debug.report.bev_plot import colour_image

        rr = self._rr
        layers = [(p.name, p.values, "inferno") for p in maps.panels]
        layers.insert(0, ("peakflip_map", maps.score_change, "Greys"))
        for k, (name, values, cmap) in enumerate(layers):
            rgba = colour_image(values, maps.nonfinite, cmap)
            if k == 0:  # the peak flips painted into the score-change map
                for mask, key in ((maps.lost, "lost"), (maps.added, "added")):
                    rgba[mask] = (*COLOURS[key], 255)
            entity = self._path("bev", label, *name.split(": "))
            self.rec.log(entity, _quad(rr, rgba, maps.extent, z=-0.1 - 0.02 * k))
            self.rec.log(entity + "/values", rr.Tensor(np.asarray(values, np.float32), dim_names=["y", "x"]))
        flips = maps.flips
        if flips:
            colours = [COLOURS["cut" if "cut" in f.kind else f.kind] for f in flips]
            texts = [f"{f.kind}: {f.cls} {_fmt(f.ref_score)}→{_fmt(f.cand_score)}" for f in flips]
            self.rec.log(self._path("peakflip", label),
                         rr.Points3D([[f.x, f.y, 0.0] for f in flips], radii=0.6, colors=colours, labels=texts))
        else:
            self.rec.log(self._path("peakflip", label), rr.Clear(recursive=False))

    def probe_table(self, label: str, rows: list[ProbeRow]) -> None:
        """The frame's per-probe error table (markdown) and each probe's rel. RMS error as a scalar."""
        rr = self._rr
        lines = ["| # | probe | max/\\|ref\\|max | rel. RMSE | status |", "|---:|---|---:|---:|---|"]
        lines += [f"| {i} | `{r.probe}` | {_fmt(r.rel_max)} | {_fmt(r.rel_rmse)} | {r.status} |"
                  for i, r in enumerate(rows)]
        self.rec.log(self._path("probes", label), rr.TextDocument("\n".join(lines), media_type=rr.MediaType.MARKDOWN))
        for r in rows:
            if math.isfinite(r.rel_rmse):
                self.rec.log(self._path("errors", label, r.probe), rr.Scalars(r.rel_rmse))

    # -- helpers ------------------------------------------------------------------------------------------------
    def _path(self, *parts: str) -> str:
        return self._rr.new_entity_path(list(parts))

    def _boxes(self, boxes, scores, labels, class_names, colour):
        """Boxes3D of [x, y, z_bottom, l, w, h, yaw, ...] rows: centred, sized, turned by yaw about z."""
        b = np.asarray(boxes, dtype=np.float64)
        centres = np.stack([b[:, 0], b[:, 1], b[:, 2] + b[:, 5] / 2], axis=1)
        half = b[:, 6] / 2
        quats = np.stack([np.zeros_like(half), np.zeros_like(half), np.sin(half), np.cos(half)], axis=1)  # xyzw
        names = [class_names[int(k)] if 0 <= int(k) < len(class_names) else str(int(k)) for k in labels]
        texts = names if scores is None else [f"{n} {float(s):.2f}" for n, s in zip(names, scores)]
        return self._rr.Boxes3D(centers=centres, sizes=b[:, 3:6], quaternions=quats, colors=colour, labels=texts)


def bisect_recording(report: BisectReport, path: str | os.PathLike, name: str = "bisect") -> Path | None:
    """A one-frame recording of a bisect: the scan, the boxes, the BEV maps and every candidate's probe table."""
    with RerunWriter(path, name) as w:
        log_bisect(w, report, 0, name)
    return w.path


def log_bisect(w: RerunWriter, report: BisectReport, index: int, token: str) -> None:
    """Frame `index` of `w` from a bisect report: what `bisect_recording` writes, and a sweep's bisected frames."""
    from cp_debug.report.bev_plot import bev_maps

    w.frame(index, token)
    scene = report.scene
    names: tuple[str, ...] = ()
    if scene is not None:
        names = tuple(scene.config.class_names)
        w.scan(scene.points, scene.truth, names)
    first = True
    for cand in report.candidates:
        maps = bev_maps(report, cand.label)
        if maps is not None:
            if first:
                w.boxes(report.reference, maps.reference_boxes.boxes, maps.reference_boxes.scores,
                        maps.reference_boxes.labels, names, reference=True)
                first = False
            w.boxes(cand.label, maps.candidate_boxes.boxes, maps.candidate_boxes.scores, maps.candidate_boxes.labels,
                    names, reference=False)
            w.bev(cand.label, maps)
        w.probe_table(cand.label, [ProbeRow(r.probe, r.diff.rel_max if r.diff else math.nan,
                                            r.diff.rel_rmse if r.diff else math.nan, r.status) for r in cand.results])


def _quad(rr, rgba: np.ndarray, extent, z: float):
    """A flat textured rectangle over `extent` (x0, x1, y0, y1 in m) at height z; `rgba` row 0 is y0."""
    x0, x1, y0, y1 = extent
    return rr.Mesh3D(vertex_positions=[[x0, y0, z], [x1, y0, z], [x1, y1, z], [x0, y1, z]],
                     triangle_indices=[[0, 1, 2], [0, 2, 3]],
                     vertex_texcoords=[[0, 1], [1, 1], [1, 0], [0, 0]],
                     albedo_texture=np.ascontiguousarray(rgba[::-1]))


def _height_colours(z: np.ndarray) -> np.ndarray:
    """Points coloured by height (viridis over the scan's 2nd–98th percentile)."""
    from matplotlib import colormaps

    if not len(z):
        return np.zeros((0, 3), np.uint8)
    lo, hi = np.percentile(z, [2, 98])
    t = np.clip((z - lo) / max(hi - lo, 1e-6), 0, 1)
    return (colormaps["viridis"](t)[:, :3] * 255).astype(np.uint8)


def _fmt(v: float) -> str:
    return f"{v:.3g}" if v is not None and math.isfinite(v) else str(v)
