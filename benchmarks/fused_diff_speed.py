"""The sweep's comparisons on the card (issue 87, item 1): `fused_diff`'s one pass over each probe of a real frame,
timed, against the bytes it reads.

    python benchmarks/fused_diff_speed.py [--preset awml-base] [--pair torch-cuda,ort-cuda-fp16] [--level block]
        [--variants 1024x4x8,512x8x8,256x4x8,256x4x16] [--repeat 20]

One held-out frame through the sweep worker's lanes (`SweepWorker`, as an actor runs them: the reference's and the
candidate's probes of `--level` kept on the device), then each probe pair compared by the fused pass under each
variant (BLOCKxWARPSxPROGRAMS: elements a program takes at a step, warps a program, programs an SM at most), its
kernel's time on the card (torch's profiler: the kernel alone, not the launch) over `--repeat` rounds: per probe its
shape, its bytes (both operands read once), each variant's time and GB/s, and the frame's total. Each variant's
figures are checked against the first's: the maxima and counts equal, the float64 sums within 1e-12 relative (only
their order differs).
"""

from __future__ import annotations

import argparse
import sys

from gpu_frame_kernels import profiled  # this folder's: a run under torch's profiler, the card waited for


def _time(fn, repeat: int, torch) -> float:
    """Milliseconds of the fused kernel a call of `fn` (its launch and the row's reduction left out), by torch's
    profiler over `repeat` calls after one."""
    fn()
    _, _, prof = profiled(lambda: [fn() for _ in range(repeat)], torch)
    us = [e.duration_ns() / 1e3 for e in prof.profiler.kineto_results.events() if e.name() == "diff_figures"]
    if len(us) != repeat:
        raise SystemExit(f"the profiler saw {len(us)} fused kernels of {repeat}")
    return sum(us) / repeat / 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="awml-base")
    ap.add_argument("--pair", default="torch-cuda,ort-cuda-fp16")
    ap.add_argument("--level", default="block")
    ap.add_argument("--variants", default="1024x4x8,512x8x8,256x4x8,256x4x16")
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()

    import onnxruntime
    import torch

    from cp_debug.compare import fused_diff
    from cp_debug.compare.diff import default_tolerance
    from cp_debug.data.frames import held_out
    from cp_debug.recipes import catalog
    from cp_debug.recipes.centerpoint.sweep.worker import SweepWorker
    from cp_debug.sweep.records import SweepSettings

    if not torch.cuda.is_available():
        print("no CUDA device: nothing to time", file=sys.stderr)
        sys.exit(1)
    onnxruntime.set_default_logger_severity(4)
    labels = tuple(args.pair.split(","))
    settings = SweepSettings(labels, preset=args.preset, level=args.level, recipe=catalog.recipe(), threads=1)
    frame = held_out(1)[0]
    with SweepWorker(settings) as worker:
        ran = worker._run_lanes(0, frame.token, worker._read(frame))
        ref_probes = ran.ref[1]
        cand = ran.cands[labels[1]][1]
        pairs = [(n, ref_probes[n], cand[n]) for n in worker.order
                 if n in ref_probes and n in cand and torch.is_tensor(ref_probes[n]) and torch.is_tensor(cand[n])
                 and ref_probes[n].shape == cand[n].shape]
    torch.cuda.synchronize()
    tol = default_tolerance("fp16")
    variants = [tuple(int(x) for x in v.split("x")) for v in args.variants.split(",")]
    print(f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}, {args.preset} {args.pair} --level "
          f"{args.level}: {len(pairs)} probe pairs on the device, {args.repeat} rounds a variant")
    times: dict = {}
    first: dict = {}
    bad = []
    for block, warps, per_sm in variants:
        fused_diff._BLOCK, fused_diff._WARPS, fused_diff._PROGRAMS_PER_SM = block, warps, per_sm
        for name, r, t in pairs:
            def one(r=r, t=t):
                return fused_diff.figures_on_device(r, t, tol.rtol, tol.atol)
            row = one()
            if row is None:
                print(f"the fused pass cannot run: {fused_diff.reason_unavailable()}", file=sys.stderr)
                sys.exit(1)
            row = row.cpu().tolist()
            base = first.setdefault(name, row)
            same = (row[0] == base[0] and row[6:] == base[6:]
                    and all(abs(a - b) <= 1e-12 * max(abs(b), 1e-300) for a, b in zip(row[1:6], base[1:6])))
            if not same:
                bad.append(f"{block}x{warps}x{per_sm} {name}: {row} against {base}")
            times[(block, warps, per_sm, name)] = _time(one, args.repeat, torch)
    head = "".join(f" {'x'.join(map(str, v)):>9s}" for v in variants)
    print(f"{'probe':42s} {'shape':22s} {'MB':>7s} {head}  (ms; GB/s of the best)")
    total = {v: 0.0 for v in variants}
    mb_all = 0.0
    for name, r, t in pairs:
        mb = (r.numel() * r.element_size() + t.numel() * t.element_size()) / 1e6
        mb_all += mb
        cells = []
        for v in variants:
            ms = times[(*v, name)]
            total[v] += ms
            cells.append(f" {ms:9.3f}")
        best = min(times[(*v, name)] for v in variants)
        print(f"{name[:42]:42s} {str(tuple(r.shape))[:22]:22s} {mb:7.1f} {''.join(cells)}  {mb / best:7.0f}")
    print(f"{'the frame':42s} {'':22s} {mb_all:7.1f} {''.join(f' {total[v]:9.3f}' for v in variants)}")
    for v in variants:
        print(f"  {'x'.join(map(str, v))}: {total[v]:.3f} ms a frame, {mb_all / total[v]:.0f} GB/s over the frame's "
              "probes")
    print("figures: every variant's equal to the first's" if not bad else "figures DIFFER:\n  " + "\n  ".join(bad))


if __name__ == "__main__":
    main()
