"""TransFusion-L's part of `cpdebug fix` (its `fix` plug-in, recipe_contract/recipe.PLUGINS): the FP16 fix of its one
graph (`transfusion.onnx`, Autoware's interface), the smallest set of nodes to keep in FP32 over a frame set, judged
flip-aware; what the fix does not take of it, and `fix --check` of a folder it wrote.

The graph's outputs are per query, and which cell a query is comes from the top K over the dense heatmap: a tiny
score change swaps the cells chosen (a flip), and the columns of cls_score0 / bbox_pred0 / dir_cls_pred0 then do
not line up. So every run exposes the selection's tensors (`export.proposal_tensors`: the dense heatmap, the TopK's
indices) and a frame is judged by `query_verdict`:
- the per-query outputs on the queries both sides chose only, matched by cell (the class x cell index), and the
  dense heatmap, each against the candidate's precision (`compare.noise.judge`);
- the flips as the bisect finds them (`proposals.ProposalSelection.chosen_flips`): those whose reference scores lay
  within the precision's score band of the K-th score (`compare.noise.budget`, the band the box verdicts use) are
  explained; any other makes the frame degraded.
An experiment runs the FP32 graph through the candidate's runner with the set kept in FP32 (on the CPU every float16
tensor rounded after its node, as the bisect runs `ort-cpu-fp16`); the written graph is that conversion
(`precision.fp16.convert_to_fp16`), verified by running the file itself on the verification's frames.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from cp_debug.backends.spec import BackendSpec
from cp_debug.compare.noise import Outcome
from cp_debug.errors import BadInputError
from cp_debug.fix.check import FIGURES
from cp_debug.fix.figures import Figures, FrameVerdict, progress_step
from cp_debug.fix.names import SEP
from cp_debug.fix.targets import FixTarget
from cp_debug.recipes.transfusion.export import ONNX_FILE

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.fix.outcome import FixOutcome
    from cp_debug.fix.request import FixRequest

HEATMAP = "dense_heatmap"  # the selection's input, judged beside the deployed outputs
JUDGED_AGAINST = ("the FP32 transfusion.onnx in ONNX Runtime: per-query outputs on the proposals both chose (matched "
                  "by cell), the dense heatmap, and the proposal flips beyond the precision's score band of the K-th "
                  "score")
NEEDS_DEVKIT = False  # the verification judges the graph's queries: no mAP, no nuscenes-devkit
# `fix --check`'s figures besides CenterPoint's: the proposal flips per frame, those beyond the band
CHECK_FIGURES = FIGURES + ("flips", "flips_beyond_band", "matched_queries", "outcomes")


def needs_devkit(req: "FixRequest") -> bool:
    """Whether the verification scores mAP with nuscenes-devkit: never for the one graph."""
    return NEEDS_DEVKIT


def check_request(req: "FixRequest") -> None:
    """What the TransFusion fix does not take, said before anything runs: it keeps nodes of the one graph in FP32
    for an FP16 candidate over held-out synthetic frames, judged per query (no boxes, no mAP)."""
    spec = req.spec
    if spec.precision != "fp16":
        raise BadInputError(f"fix --recipe transfusion searches FP16 candidates (ort-cpu-fp16, ort-cuda-fp16), not "
                            f"{req.candidate}: INT8 of TransFusion-L is not built")
    given = [o for o, v in (("--int8", req.model.int8), ("@DIR (a deployed file)", spec.onnx_dir),
                            ("--scenes PATH", req.scenes_path), ("--max-map-drop", req.target.max_map_drop),
                            ("--max-lost-boxes", req.target.max_lost_boxes)) if v is not None]
    if given:
        raise BadInputError(f"{', '.join(given)}: CenterPoint's; not for fix --recipe transfusion (it judges the "
                            "graph's per-query outputs over held-out synthetic frames: --max-rel-rmse or within "
                            "precision)")


def run_fix(req: "FixRequest", progress=None) -> "FixOutcome":
    """The FP16 fix of the one graph (`transfusion_fix`) as a FixOutcome."""
    from cp_debug.fix.names import per_file
    from cp_debug.fix.outcome import FixOutcome, FixSet
    from cp_debug.fix.request import request_frames
    from cp_debug.fix.toolchain import stamp
    from cp_debug.models.transfusion.presets import get_preset
    from cp_debug.recipes.transfusion.source import load_transfusion

    m = req.model
    cfg = get_preset(m.model_name)
    frames, vframes = request_frames(req, cfg)
    with progress_step(progress, "loading the model"):
        loaded = load_transfusion(m.model_name, m.checkpoint, m.seed, m.random_weights)
    fx = transfusion_fix(req, loaded.model.eval(), cfg, frames, vframes, progress)
    nodes = per_file(fx.search.keep or (), [ONNX_FILE])
    modules = sorted({v for v in fx.modules.values() if v})
    kept = FixSet("fp16", tuple(modules), nodes, keep_fp32=tuple(fx.search.keep or ()), node_modules=fx.modules)
    env, version, now = stamp(progress)
    return FixOutcome(req, m.model_name, loaded.weights, frames, kept, fx.search, fx.verification, env, version, now,
                      None, fx.fixed, fx.reference, nodes, tuple(modules),
                      judged_against=JUDGED_AGAINST)


def check_fix(root, doc: dict, *, device: str | None = None, progress=None):
    """(the verification run again, the figures `fix --check` compares): `check_graph`."""
    return check_graph(root, doc, device=device, progress=progress), CHECK_FIGURES


@dataclass(frozen=True)
class GraphRun:
    """One side on one frame: the deployed outputs, the dense heatmap (logits), the local-max scores (the TopK's
    input) and the TopK's indices (1, K)."""

    outputs: dict
    dense: np.ndarray
    pooled: np.ndarray
    top: np.ndarray


@dataclass(frozen=True)
class QueryVerdict:
    """One frame of a candidate judged flip-aware (`query_verdict`)."""

    outcome: Outcome
    reason: str
    rel_rmse: float  # the worst judged tensor's (matched queries), NaN where not finite
    worst_output: str
    flipped: int  # of K
    beyond_band: int  # flips the score band does not explain (top-K flips and local-max flips)
    matched: int  # queries both sides chose


def query_verdict(selection, ref: GraphRun, got: GraphRun, precision: str) -> QueryVerdict:
    """`got` (run pinned to `ref`'s proposals: its columns are `ref.top`'s cells; `got.top` its own choice) against
    `ref` on one frame, on the cells both chose: see the module."""
    from cp_debug.compare.diff import TensorDiff
    from cp_debug.compare.noise import budget, judge
    from cp_debug.compare.noise import worst as worst_outcome
    from cp_debug.recipes.transfusion.interface import DEPLOY_OUTPUTS

    band = budget(precision)
    flips = selection.chosen_flips(ref.dense, ref.top, got.dense, got.top)
    own = {int(c) for c in np.asarray(got.top).reshape(-1)}  # the candidate's own choice
    ri = np.asarray([i for i, c in enumerate(np.asarray(ref.top).reshape(-1)) if int(c) in own], dtype=np.int64)
    cells = np.asarray(ref.top).reshape(-1)[ri] % np.asarray(ref.dense)[0, 0].size
    agree, masked, masked_beyond = selection.local_max_flips(ref.dense, ref.pooled, got.pooled, cells, band)
    diffs = [TensorDiff.from_arrays(HEATMAP, np.asarray(ref.dense, np.float32), np.asarray(got.dense, np.float32))]
    for name in DEPLOY_OUTPUTS:
        r, g = (np.asarray(x, np.float32) for x in (ref.outputs[name], got.outputs[name]))
        if not len(ri):  # nothing matched: the whole outputs (NaN/Inf at least)
            diffs.append(TensorDiff.from_arrays(name, r, g))
            continue
        r, g = r[..., ri], g[..., ri]
        if name == "cls_score0":  # the classes whose local-max decision flipped there: flips, not numbers
            r, g = r[0][agree], g[0][agree]
        diffs.append(TensorDiff.from_arrays(name, r, g))
    judged = {d.name: (d, judge(d, precision)) for d in diffs}
    name = max(judged, key=lambda n: (judged[n][1].outcome.severity, _inf_nan(judged[n][1].noise_ratio)))
    d, j = judged[name]
    beyond = flips.beyond(band)
    bad = beyond or masked_beyond
    outcome = worst_outcome([j.outcome, Outcome.DEGRADED if bad else Outcome.WITHIN_PRECISION])
    said = f"worst {name} ({len(ri)} of {flips.k} queries matched by cell): {j.reason}"
    if beyond:
        said += f"; {beyond} of {flips.flipped} flip(s) of the top {flips.k} beyond {band:.2g} of the K-th score"
    elif flips.flipped:
        said += f"; {flips.flipped} flip(s) of the top {flips.k}, all within {band:.2g} of the K-th score"
    if masked:
        said += (f"; {masked} class local-max decision(s) flipped at matched cells, "
                 + (f"{masked_beyond} beyond {band:.2g} of the window's max" if masked_beyond else
                    f"all within {band:.2g} of the window's max"))
    rel = float(d.rel_rmse) if np.isfinite(d.rel_rmse) and not (d.nan or d.inf) else float("nan")
    return QueryVerdict(outcome, said, rel, name, flips.flipped, beyond + masked_beyond, len(ri))


def _inf_nan(x: float) -> float:
    return float("inf") if x != x else x


def figures_of(indices: Sequence[int], verdicts: Sequence[QueryVerdict]) -> Figures:
    """The fix's figures of frames judged by `query_verdict` (their flips in `extra`)."""
    return Figures(tuple(indices), tuple(v.rel_rmse for v in verdicts), tuple(v.worst_output for v in verdicts),
                   verdicts=tuple(FrameVerdict(v.outcome, v.reason) for v in verdicts),
                   extra={"flips": [v.flipped for v in verdicts],
                          "flips_beyond_band": [v.beyond_band for v in verdicts],
                          "matched_queries": [v.matched for v in verdicts]})


def frame_feeds(cfg, frames) -> list[dict[str, np.ndarray]]:
    """Each frame's voxels as the graph takes them (`voxels`, `num_points`, `coors`; cp_debug's voxelization)."""
    import torch

    from cp_debug.lidar.voxelize import voxelize

    feeds = []
    for frame in frames.frames:
        vox = voxelize(torch.as_tensor(frame.load(cfg).points), cfg)
        feeds.append({"voxels": vox.voxels.float().numpy(), "num_points": vox.num_points.to(torch.int32).numpy(),
                      "coors": vox.coors.to(torch.int32).numpy()})
    return feeds


class OneGraph:
    """The FP32 graph and its selection probes over the frames' feeds. `reference(spec)` runs the FP32 graph itself;
    `run(spec, refs, model, indices, keep)` runs `model` (default the FP32 graph; else a converted file) pinned to the
    reference's proposals (`export.pin_proposals`) through `spec`'s runner, `keep` the nodes an FP16 spec keeps in
    FP32. Each returns (runs, seconds per frame). The FP32 graph's probes are exposed and its pinned form made once,
    not per experiment (each is a graph import of the whole graph)."""

    def __init__(self, model, feeds: Sequence[dict]):
        from cp_debug.recipes.transfusion.export import proposal_tensors

        self.model, self.feeds = model, list(feeds)
        self.dense, self.pooled, self.top = proposal_tensors(model)
        self._exposed = self._pinned = None

    @property
    def exposed(self):
        """The FP32 graph with the selection's tensors as graph outputs (the runner then exposes nothing)."""
        if self._exposed is None:
            from cp_debug.graph.model import expose_outputs

            self._exposed = expose_outputs(self.model, [self.dense, self.pooled, self.top])
        return self._exposed

    def reference(self, spec, indices: Sequence[int] | None = None):
        return self._run(spec, self.exposed, indices, None, None)

    def run(self, spec, refs: Sequence[GraphRun], model=None, indices: Sequence[int] | None = None,
            keep: Sequence[str] | None = None):
        from cp_debug.recipes.transfusion.export import pin_proposals

        if model is None:
            if self._pinned is None:
                self._pinned = pin_proposals(self.exposed)
            return self._run(spec, self._pinned, indices, keep, refs)
        return self._run(spec, pin_proposals(model), indices, keep, refs)

    def _run(self, spec, model, indices, keep, refs):
        from cp_debug.backends import make_runner
        from cp_debug.recipes.transfusion.export import PINNED_PROPOSALS
        from cp_debug.recipes.transfusion.interface import DEPLOY_OUTPUTS

        indices = range(len(self.feeds)) if indices is None else indices
        opts = {"keep_fp32_nodes": list(keep)} if keep is not None else {}
        runs, seconds = [], []
        with make_runner(spec, onnx_model=model, extra_outputs=[self.dense, self.pooled, self.top], **opts) as runner:
            for i in indices:
                feed = dict(self.feeds[i])
                if refs is not None:
                    feed[PINNED_PROPOSALS] = np.asarray(refs[i].top, dtype=np.int64)
                t0 = time.perf_counter()
                out = runner.infer(feed)
                seconds.append(time.perf_counter() - t0)
                runs.append(GraphRun({n: out[n] for n in DEPLOY_OUTPUTS}, out[self.dense], out[self.pooled],
                                     out[self.top]))
        return runs, seconds


def graph_candidates(model, feed: dict) -> list[str]:
    """FILE:NODE candidates of the graph, ranked as `cpdebug keep-fp32` ranks them (`bisect.cures.keep_fp32`): nodes
    touching |x| near FP16's range first (largest first, by the FP32 graph on `feed`), then the compute nodes."""
    from cp_debug.bisect.cures.keep_fp32 import absmax_by_name, rank_candidates
    from cp_debug.graph.session import run_all_outputs
    from cp_debug.graph.weight_store import import_graph

    values = {**run_all_outputs(import_graph(model), feed), **feed}
    return [f"{ONNX_FILE}{SEP}{c.name}" for c in rank_candidates(model, absmax_by_name(values))]


@dataclass(frozen=True)
class GraphFix:
    """The search, the graphs ({ONNX_FILE: ModelProto}: FP32, plain FP16, fixed — None when impossible), the kept
    nodes' modules and the verification (None when impossible)."""

    search: object  # fix.search.FixSearch
    reference: dict
    plain: dict
    fixed: dict | None
    modules: dict
    verification: object  # fix.verify.Verification | None


def transfusion_fix(req, model, cfg, frames, vframes, progress=None) -> GraphFix:
    """Export `model` (TransFusion, eval) as Autoware's one graph, search the set to keep in FP32 for `req`'s FP16
    candidate over `frames`, and verify the written conversion on `vframes`."""
    import tempfile

    import onnx

    from cp_debug.fix.figures import step_printer
    from cp_debug.fix.names import node_modules, per_file
    from cp_debug.fix.search import search_fix
    from cp_debug.precision.fp16_cache import convert_to_fp16_cached
    from cp_debug.recipes.transfusion.export import export_transfusion

    with progress_step(progress, "exporting transfusion.onnx (FP32)"), \
            tempfile.TemporaryDirectory(prefix="cpdebug_fix_") as tmp:
        fp32 = onnx.load(str(export_transfusion(model, cfg, tmp, sample_points=frames.frames[0].load(cfg).points)
                             .path))
    graph = OneGraph(fp32, frame_feeds(cfg, frames))
    spec = req.spec
    ref_spec = _fp32(spec)
    with progress_step(progress, f"FP32 reference on {len(frames)} frame(s)"):
        reference, _ = graph.reference(ref_spec)
    candidates = _candidates(req, graph, fp32, progress)
    selection = _selection(model, cfg)

    def judge(keep, indices, whole):
        got, _ = graph.run(spec, reference, indices=indices, keep=[k.partition(SEP)[2] for k in keep])
        return figures_of(indices, [query_verdict(selection, reference[i], g, "fp16") for i, g in zip(indices, got)])

    search = search_fix(candidates, judge, req.target, len(frames), worst=req.worst, frame_order=req.frame_order,
                        on_step=step_printer(progress))
    plain = {ONNX_FILE: convert_to_fp16_cached(fp32)}
    fixed = None
    if search.keep == ():  # nothing kept: the fix is the plain conversion itself
        fixed = plain
    elif search.keep is not None:
        kept = per_file(search.keep, [ONNX_FILE])[ONNX_FILE]
        fixed = {ONNX_FILE: convert_to_fp16_cached(fp32, keep_fp32_nodes=kept)}
    verification = None
    if fixed is not None:
        # on the search's own frames (and device) the FP32 reference is the search's: not run again
        same = list(vframes.tokens) == list(frames.tokens) and ref_spec == BackendSpec.parse(f"ort-{spec.device}")
        verification = verify_graph(cfg, model, vframes, req.target, fp32, fixed[ONNX_FILE], plain[ONNX_FILE],
                                    device=spec.device, progress=progress,
                                    known=(graph, reference) if same else None)
    modules = node_modules({ONNX_FILE: fp32}, {n for n, _ in model.named_modules()})
    return GraphFix(search, {ONNX_FILE: fp32}, plain, fixed, {k: modules.get(k) for k in search.keep or ()},
                    verification)


def _fp32(spec):
    from dataclasses import replace

    return replace(spec, precision="fp32", onnx_dir=None)


def _selection(model, cfg):
    """The proposal selection of `model` (a TransFusion or its head: the selection has no weights of its own)."""
    from cp_debug.recipes.transfusion.proposals import ProposalSelection

    return ProposalSelection(getattr(model, "pts_bbox_head", model), cfg.class_names, cfg.head_size)


def _candidates(req, graph: OneGraph, fp32, progress) -> list[str]:
    """The request's FILE:NODE candidates (checked), else the graph's ranked on the ranking frame."""
    if req.candidates is None:
        order = list(req.frame_order or range(len(graph.feeds)))
        with progress_step(progress, "ranking the candidates (FP32 magnitudes)"):
            return graph_candidates(fp32, graph.feeds[order[0]])
    known = {f"{ONNX_FILE}{SEP}{n.name}" for n in fp32.graph.node if n.name}
    unknown = [c for c in req.candidates if c not in known]
    if unknown:
        raise BadInputError(f"candidate(s) {', '.join(unknown[:3])} are not {ONNX_FILE}{SEP}NODE of the graph "
                            f"(e.g. {sorted(known)[0]})")
    return list(req.candidates)


def verify_graph(cfg, model, frames, target: FixTarget, reference, fixed, plain=None, *, device: str = "cpu",
                 progress=None, known: tuple | None = None):
    """Run the FP32 graph, the plain FP16 graph (optional) and the fixed graph (ModelProtos or paths, the files as
    written: their precision is in them) over `frames` and judge each frame flip-aware (`query_verdict`) against
    `target`: a `fix.verify.Verification` (no mAP: the frames' boxes are not evaluated for TransFusion-L). `model`:
    the TransFusion model or its head (the selection's). `known`: (OneGraph, its reference runs) of this FP32 graph
    on these frames on this device, already run. A fixed graph that is the plain one (the same object) runs once."""
    from cp_debug.fix.verify import Lane, Verification
    from cp_debug.graph.model import load_onnx as load

    spec = BackendSpec.parse(f"ort-{device}")
    selection = _selection(model, cfg)
    if known is not None:
        graph, ref = known
    else:
        graph = OneGraph(load(reference), frame_feeds(cfg, frames))
        with progress_step(progress, f"verification: FP32 reference on {len(frames)} frame(s)"):
            ref, _ = graph.reference(spec)

    def lane(m, name):
        with progress_step(progress, f"verification: {name} on {len(frames)} frame(s)"):
            got, seconds = graph.run(spec, ref, load(m))
        verdicts = [query_verdict(selection, r, g, "fp16") for r, g in zip(ref, got)]
        ms = float(np.median(seconds[1:] if len(seconds) > 1 else seconds)) * 1e3
        return Lane(figures_of(range(len(frames)), verdicts), None, None, {"transfusion": ms})

    plain_lane = lane(plain, "plain candidate") if plain is not None else None
    fixed_lane = plain_lane if plain_lane is not None and fixed is plain else lane(fixed, "fix")
    return Verification(target, frames, None, None, plain_lane, fixed_lane, {}, device, "fp16")


def check_graph(root, doc: dict, *, device: str | None = None, progress=None):
    """`fix --check` of a TransFusion fix folder: its recorded verification run again (same frames, target and
    device unless `device`) on the files as written (`transfusion.onnx` against `fp32.transfusion.onnx`), judged by
    `verify_graph` as when it was written: a `fix.verify.Verification`. The selection needs the model's head only
    (no weights of its own): built from the recorded model, randomly initialised."""
    from pathlib import Path

    from cp_debug.data.frames import frame_set_from_json
    from cp_debug.fix.artifact import recorded_model_name, reference_name
    from cp_debug.models.transfusion.model import build_model
    from cp_debug.models.transfusion.presets import get_preset

    root = Path(root)
    fixed, reference = root / ONNX_FILE, root / reference_name(ONNX_FILE)
    missing = [p.name for p in (fixed, reference) if not p.is_file()]
    if missing:
        raise BadInputError(f"{root} lacks {', '.join(missing)}: not a written TransFusion fix (cpdebug fix --recipe "
                            "transfusion --out DIR)")
    cfg = get_preset(recorded_model_name(doc))
    rec = doc["verification"]
    frames = frame_set_from_json(rec["frames"], cfg)
    return verify_graph(cfg, build_model(cfg, 0).pts_bbox_head, frames, FixTarget.from_json(doc["target"]),
                        reference, fixed, device=device or rec.get("device", "cpu"), progress=progress)
