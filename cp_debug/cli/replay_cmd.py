"""`cpdebug replay`: a deployment's own boxes against the reference on the same clouds, and the glue that explains
them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import typer

from cp_debug.cli.common.options import (AutowareParams, Checkpoint, ConfigFile, DataRoot, Html, Json, LidarTopic,
    MinMatch,
                                   Parquet, Preset, Quiet, RandomWeights, Seed, Verbose, model_record, option)
from cp_debug.cli.common.quiet import ThirdParty
from cp_debug.lidar.record import ModelRecord


@dataclass(frozen=True)
class ReplaySource:
    """Where the deployment's boxes are: one of a bag, a CUDA-CenterPoint folder or an mmdet3d results pkl."""

    bag: Path | None
    lidar_topic: str | None
    objects_topic: str | None
    stamp_tolerance_ms: float
    cuda_centerpoint: Path | None
    mmdet3d_pkl: Path | None
    scenes: Path | None
    data_root: Path | None
    max_frames: int | None


@dataclass(frozen=True)
class ReplayOutputs:
    json_out: str | None
    parquet: Path | None
    html: Path | None
    quiet: bool


def _ints(text: str | None, option: str) -> tuple[int, ...]:
    from cp_debug.errors import BadInputError

    try:
        values = tuple(int(t) for t in (text or "").split(",") if t.strip())
    except ValueError:
        raise BadInputError(f"{option} {text!r}: give comma-separated integers, e.g. 0,1,2") from None
    if any(v < 0 for v in values):
        raise BadInputError(f"{option} {text!r}: values must not be negative")
    return values


def replay(
    bag: Annotated[Optional[Path], typer.Argument(
        help="A rosbag2 folder (sqlite3 .db3 or .mcap) with the clouds and the node's DetectedObjects.")] = None,
    list_topics: Annotated[bool, typer.Option(
        "--list", help="List the bag's topics and message types, and stop.")] = False,
    lidar_topic: LidarTopic = None,
    objects_topic: Annotated[Optional[str], typer.Option(
        help="DetectedObjects topic the node published (default: "
             "/perception/object_recognition/detection/centerpoint/objects).")] = None,
    stamp_tolerance_ms: Annotated[float, typer.Option(
        min=0.0, help="Pair objects with the nearest cloud within this many ms (0: equal header stamps).")] = 0.0,
    cuda_centerpoint: Annotated[Optional[Path], typer.Option(
        "--cuda-centerpoint", metavar="DIR",
        help="CUDA-CenterPoint's <token>.txt prediction folder (with --scenes).")] = None,
    mmdet3d_pkl: Annotated[Optional[Path], typer.Option(
        "--mmdet3d-pkl", metavar="FILE", help="An mmdet3d results .pkl (with --scenes).")] = None,
    scenes: Annotated[Optional[Path], option(
        "--scenes", help="mmdet3d info file (or DIR with infos.pkl) of the scans the prediction files are of.")] = None,
    data_root: DataRoot = None,
    preset: Preset = "demo",
    config: ConfigFile = None,
    checkpoint: Checkpoint = None,
    random_weights: RandomWeights = False,
    seed: Seed = 0,
    params: AutowareParams = None,
    shuffle_seeds: Annotated[str, typer.Option(
        help="Seeds of the point-order shuffles tried (comma-separated).")] = "0,1,2",
    max_voxels: Annotated[Optional[str], typer.Option(
        help="Voxel caps to try besides the model's (the node's max_voxel_size), comma-separated.")] = None,
    max_frames: Annotated[Optional[int], option("--n", min=1, show_default="all", help="Replay at most N frames.")
                          ] = None,
    device: Annotated[str, option(
        "--device", help="Where the reference runs: cpu or cuda (the node's GPU; exit 3 when torch sees none).")
    ] = "cpu",
    min_match: MinMatch = None,
    json_out: Json = None,
    parquet: Parquet = None,
    html: Html = None,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Replay a deployment's own detections: run the reference on the same clouds, try the deployment-glue
    variants (yaw convention, sigmoid, box z, voxel features, point order and caps, NMS, thresholds) and say
    which one brings the deployment's boxes closest.
    """
    with ThirdParty(verbose=verbose) as third_party:
        model = model_record(preset, config, checkpoint, random_weights=random_weights, seed=seed)
        source = ReplaySource(bag=bag, lidar_topic=lidar_topic, objects_topic=objects_topic,
                              stamp_tolerance_ms=stamp_tolerance_ms, cuda_centerpoint=cuda_centerpoint,
                              mmdet3d_pkl=mmdet3d_pkl, scenes=scenes, data_root=data_root,
                              max_frames=max_frames)
        outputs = ReplayOutputs(json_out=json_out, parquet=parquet, html=html, quiet=quiet or json_out == "-")
        if list_topics:
            _list_topics(bag)
            return
        from cp_debug.eval.gates import check_limits

        check_limits(min_match=min_match)
        code = _replay(source, model, outputs, shuffle_seeds=shuffle_seeds, max_voxels=max_voxels,
                       third_party=third_party, device=device, min_match=min_match, params=tuple(params or ()))
    raise typer.Exit(code)


def _list_topics(bag: Path | None) -> None:
    from cp_debug.cli.common.output import stdout_console
    from cp_debug.data.rosbag import list_topics as topics
    from cp_debug.errors import BadInputError

    if bag is None:
        raise BadInputError("--list needs a BAG")
    console = stdout_console()
    for t in topics(bag):
        console.print(f"{t.name}\t{t.msgtype}\t{t.count}", highlight=False, soft_wrap=True)


def _replay(src: ReplaySource, model: ModelRecord, out: ReplayOutputs, *, shuffle_seeds: str, max_voxels: str | None,
            third_party, device: str = "cpu", min_match: float | None = None, params: tuple[Path, ...] = ()) -> int:
    """Replay, show and write the report; the exit code (`ExitCode.DIVERGED` when --min-match is broken)."""
    from cp_debug.cli.common.output import StepProgress, finish, gates_exit
    from cp_debug.cli.common.preflight import check_torch_device
    from cp_debug.errors import BadInputError, ExitCode

    bag, cuda_centerpoint, mmdet3d_pkl = src.bag, src.cuda_centerpoint, src.mmdet3d_pkl
    json_out, parquet, html, quiet = out.json_out, out.parquet, out.html, out.quiet
    named = (("BAG", bag), ("--cuda-centerpoint", cuda_centerpoint), ("--mmdet3d-pkl", mmdet3d_pkl))
    given = [n for n, v in named if v]
    if len(given) != 1:
        raise BadInputError("give exactly one of BAG, --cuda-centerpoint DIR, --mmdet3d-pkl FILE"
                            + (f" (got {', '.join(given)})" if given else ""))
    caps = _ints(max_voxels, "--max-voxels")
    if 0 in caps:  # no pillar at all: nothing to replay (said before anything loads)
        raise BadInputError(f"--max-voxels {max_voxels!r}: a voxel cap is at least 1")
    from cp_debug.recipes import catalog
    from cp_debug.replay.engine import ReplayOptions
    from cp_debug.report.io import check_writable

    cfg = catalog.recipe().config(model.model_name)  # replay is Autoware's CenterPoint node's: the default recipe
    for out in (json_out if json_out not in (None, "-") else None, parquet, html):
        if out is not None:
            check_writable(out)
    node = None
    if params:  # the node's own thresholds, NMS and cap instead of guesses; checked against the model first
        from cp_debug.cli.common.preflight import lint_first
        from cp_debug.replay.variants import NodeGlue

        lint_first(model, params, [], third_party.terminal)
        node = NodeGlue.read(params, catalog.recipe().plugin("replay").AUTOWARE_NODE)
    opts = ReplayOptions(seeds=_ints(shuffle_seeds, "--shuffle-seeds"), max_voxels=caps, node=node)
    check_torch_device(device)
    steps = StepProgress(quiet, stream=third_party.terminal)
    with steps.step("reading the deployment's frames"):
        if bag is not None:
            from cp_debug.data.rosbag import LIDAR_TOPIC, OBJECTS_TOPIC
            from cp_debug.replay.sources import frames_from_bag

            source = frames_from_bag(bag, cfg, lidar_topic=src.lidar_topic or LIDAR_TOPIC,
                                     objects_topic=src.objects_topic or OBJECTS_TOPIC,
                                     tolerance_ms=src.stamp_tolerance_ms, max_frames=src.max_frames)
        else:
            from cp_debug.replay.sources import frames_from_files

            kind, path = ("cuda-centerpoint", cuda_centerpoint) if cuda_centerpoint else ("mmdet3d-pkl", mmdet3d_pkl)
            source = frames_from_files(kind, path, src.scenes, cfg, max_frames=src.max_frames,
                                       data_root=src.data_root)
    from cp_debug.cli.common.bar import progress_bar
    from cp_debug.replay.report import print_report
    from cp_debug.recipes import catalog
    from cp_debug.replay.session import gates, run_replay

    with progress_bar("replaying frames", len(source.frames), quiet, third_party.terminal) as advance:
        report = run_replay(source, model.model_name, model.checkpoint, model.random_weights, model.seed, opts,
                            on_frame=lambda i: advance(), device=device,
                            recipe=catalog.recipe())  # Autoware's CenterPoint node: the default recipe's
    for w in report.warnings:
        print(f"cpdebug: warning: {w}", file=third_party.terminal, flush=True)
    checks = gates(report, min_match)
    finish({**report.to_json(), "model_record": model.to_json(), "gates": [c.to_json() for c in checks]}, json_out,
           third_party, lambda console: print_report(report, console))
    if parquet is not None:
        from cp_debug.replay.files import write_parquet

        write_parquet(report, parquet)
    if html is not None:
        from cp_debug.replay.html import write_html

        write_html(report, html)
    return gates_exit(checks, third_party.terminal) or ExitCode.OK
