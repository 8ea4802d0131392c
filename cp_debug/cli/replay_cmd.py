"""`cpdebug replay`: a deployment's own boxes against the reference on the same clouds, and the glue that explains them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from cp_debug.cli._errors import handle_errors
from cp_debug.cli._quiet import ThirdParty, Verbose

# Options local to this command (the lead moves them to the shared options module at merge).
Preset = Annotated[str, typer.Option(help="Model preset (demo ships trained weights).")]
Checkpoint = Annotated[Optional[Path], typer.Option(help="The model's checkpoint (.pth).")]
RandomWeights = Annotated[bool, typer.Option("--random-weights", help="Seeded random weights instead of the default checkpoint.")]
Seed = Annotated[int, typer.Option(help="Seed of random weights.")]


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
    bag: Annotated[Optional[Path], typer.Argument(help="A rosbag2 folder (sqlite3 .db3 or .mcap) with the clouds and the node's DetectedObjects.")] = None,
    list_topics: Annotated[bool, typer.Option("--list", help="List the bag's topics and message types, and stop.")] = False,
    lidar_topic: Annotated[Optional[str], typer.Option(help="PointCloud2 topic the node read (default: Autoware's /sensing/lidar/concatenated/pointcloud).")] = None,
    objects_topic: Annotated[Optional[str], typer.Option(help="DetectedObjects topic the node published (default: /perception/object_recognition/detection/centerpoint/objects).")] = None,
    stamp_tolerance_ms: Annotated[float, typer.Option(min=0.0, help="Pair objects with the nearest cloud within this many ms (0: equal header stamps).")] = 0.0,
    cuda_centerpoint: Annotated[Optional[Path], typer.Option("--cuda-centerpoint", metavar="DIR", help="CUDA-CenterPoint's <token>.txt prediction folder (with --scenes).")] = None,
    mmdet3d_pkl: Annotated[Optional[Path], typer.Option("--mmdet3d-pkl", metavar="FILE", help="An mmdet3d results .pkl (with --scenes).")] = None,
    scenes: Annotated[Optional[Path], typer.Option(help="mmdet3d info file (or DIR with infos.pkl) of the scans the prediction files are of.")] = None,
    preset: Preset = "demo",
    checkpoint: Checkpoint = None,
    random_weights: RandomWeights = False,
    seed: Seed = 0,
    shuffle_seeds: Annotated[str, typer.Option(help="Seeds of the point-order shuffles tried (comma-separated).")] = "0,1,2",
    max_voxels: Annotated[Optional[str], typer.Option(help="Voxel caps to try besides the preset's (the node's max_voxel_size), comma-separated.")] = None,
    max_frames: Annotated[Optional[int], typer.Option(min=1, help="Replay at most this many frames.")] = None,
    json_out: Annotated[Optional[str], typer.Option("--json", help="Write the JSON report to FILE ('-' = stdout, no table).")] = None,
    parquet: Annotated[Optional[Path], typer.Option(help="Write the per-frame, per-variant rows as Parquet.")] = None,
    html: Annotated[Optional[Path], typer.Option(help="Write an HTML page with bird's-eye views of the worst frames.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    verbose: Verbose = False,
) -> None:
    """Replay a deployment's own detections: run the reference on the same clouds, try the deployment-glue
    variants (yaw convention, sigmoid, box z, voxel features, point order and caps, NMS, thresholds) and say
    which one brings the deployment's boxes closest.

    Exit codes: 0 done, 2 bad input, 3 a library is missing.
    """
    with handle_errors(), ThirdParty(verbose=verbose) as third_party:
        _replay(bag, list_topics, lidar_topic, objects_topic, stamp_tolerance_ms, cuda_centerpoint, mmdet3d_pkl, scenes,
                preset, checkpoint, random_weights, seed, shuffle_seeds, max_voxels, max_frames, json_out, parquet, html,
                quiet or json_out == "-", third_party)


def _replay(bag, list_topics, lidar_topic, objects_topic, stamp_tolerance_ms, cuda_centerpoint, mmdet3d_pkl, scenes,
            preset, checkpoint, random_weights, seed, shuffle_seeds, max_voxels, max_frames, json_out, parquet, html,
            quiet, third_party) -> None:
    from cp_debug.cli._output import StepProgress, finish, stdout_console
    from cp_debug.errors import BadInputError

    if list_topics:
        if bag is None:
            raise BadInputError("--list needs a BAG")
        from cp_debug.data.rosbag import list_topics as topics

        console = stdout_console()
        for t in topics(bag):
            console.print(f"{t.name}\t{t.msgtype}\t{t.count}", highlight=False, soft_wrap=True)
        return
    given = [n for n, v in (("BAG", bag), ("--cuda-centerpoint", cuda_centerpoint), ("--mmdet3d-pkl", mmdet3d_pkl)) if v]
    if len(given) != 1:
        raise BadInputError("give exactly one of BAG, --cuda-centerpoint DIR, --mmdet3d-pkl FILE"
                            + (f" (got {', '.join(given)})" if given else ""))
    from cp_debug.models.centerpoint.config import get_preset
    from cp_debug.replay.engine import ReplayOptions
    from cp_debug.report.io import check_writable

    cfg = get_preset(preset)
    for out in (json_out if json_out not in (None, "-") else None, parquet, html):
        if out is not None:
            check_writable(out)
    opts = ReplayOptions(seeds=_ints(shuffle_seeds, "--shuffle-seeds"), max_voxels=_ints(max_voxels, "--max-voxels"))
    steps = StepProgress(quiet, stream=third_party.terminal)
    with steps.step("reading the deployment's frames"):
        if bag is not None:
            from cp_debug.data.rosbag import LIDAR_TOPIC, OBJECTS_TOPIC
            from cp_debug.replay.sources import frames_from_bag

            source = frames_from_bag(bag, cfg, lidar_topic=lidar_topic or LIDAR_TOPIC,
                                     objects_topic=objects_topic or OBJECTS_TOPIC, tolerance_ms=stamp_tolerance_ms,
                                     max_frames=max_frames)
        else:
            from cp_debug.replay.sources import frames_from_files

            kind, path = ("cuda-centerpoint", cuda_centerpoint) if cuda_centerpoint else ("mmdet3d-pkl", mmdet3d_pkl)
            source = frames_from_files(kind, path, scenes, cfg, max_frames=max_frames)
    from cp_debug.cli._bar import progress_bar
    from cp_debug.replay.report import print_report
    from cp_debug.replay.session import run_replay

    with progress_bar("replaying frames", len(source.frames), quiet, third_party.terminal) as advance:
        report = run_replay(source, preset, checkpoint, random_weights, seed, opts, on_frame=lambda i: advance())
    finish(report.to_dict(), json_out, third_party, lambda console: print_report(report, console))
    if parquet is not None:
        from cp_debug.replay.files import write_parquet

        write_parquet(report, parquet)
    if html is not None:
        from cp_debug.replay.html import write_html

        write_html(report, html)
