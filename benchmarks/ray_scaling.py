"""`cpdebug sweep` in process against `--ray local` with 1, 2, 4 … workers, one machine, one run (issue 71).

    python benchmarks/ray_scaling.py [--frames 120] [--workers 1,2] [--preset tiny] [--backends torch,ort-cpu-fp16]
        [--level block] [--out DIR] [--time-limit 570] [--resume] [--no-in-process] [--kill]
On a GPU host (benchmarks/gpu_ray_scaling.sh): --preset awml-base --backends torch-cuda,ort-cuda-fp16 --frames 1000
--workers 1,2,4 (one actor per GPU, Ray pins each to its card; the in-process run gets card 0).

Each configuration is a fresh `cpdebug sweep` process (`--bisect-top 0`, no HTML): the figures include the process's
start, Ray's and the actors' start. Printed as each one finishes (a run cut short still leaves its lines): wall
seconds and frames/s; the frames phase alone (first frame handed out → last one back, the executor's own clock in
sweep.json) and its frames/s; speed-up over one Ray worker and efficiency (speed-up ÷ workers), of both; the ratio to
the in-process wall; each GPU's mean utilisation and peak memory, sampled every second (pynvml, else nvidia-smi); each
worker's peak memory as it reports it (resident, and what torch reserved on its card); and whether sweep.json's
numbers equal the in-process run's (versions, the executor and the seconds aside).

`--time-limit S` (default 570: the device's 10 minutes less its start): a configuration that would not finish within
what is left, judged by the rates measured so far, is skipped and said so, and a run past it is stopped; every
configuration's figures are kept in DIR/summary.json, so `--resume` with the same --out measures only the ones
missing (a second device call on the same warm machine finishes the table). `--kill`: one more 2-worker run whose
first actor is killed (SIGKILL, by its pid) once the first shard is written; every frame must come back once.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

STRIP = ("environment", "seconds")


def _numbers(out: Path) -> dict:
    """sweep.json less what differs between runs of the same numbers."""
    doc = json.loads((out / "sweep.json").read_text())
    for key in STRIP:
        doc.pop(key, None)
    doc["settings"] = {k: v for k, v in doc["settings"].items() if k != "executor"}
    return doc


class GpuSampler:
    """Every GPU's utilisation and used memory, sampled once a second on a thread while a run goes (nothing without
    a GPU): pynvml where it is installed, else `nvidia-smi --query-gpu`."""

    def __init__(self, every: float = 1.0):
        self.every = every
        self.util: dict[int, list[float]] = {}
        self.times: list[float] = []  # time.time() of each sample
        self.mem_mb: dict[int, float] = {}
        self._stop = threading.Event()
        self._query = self._nvml() or (self._smi if shutil.which("nvidia-smi") else None)
        self._thread = threading.Thread(target=self._loop, daemon=True) if self._query else None

    def _nvml(self):
        try:
            import pynvml

            pynvml.nvmlInit()
            handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        except Exception:  # noqa: BLE001 - no pynvml, or no driver: nvidia-smi or nothing
            return None

        def query() -> list[tuple[float, float]]:
            return [(float(pynvml.nvmlDeviceGetUtilizationRates(h).gpu),
                     pynvml.nvmlDeviceGetMemoryInfo(h).used / 2**20) for h in handles]

        return query

    @staticmethod
    def _smi() -> list[tuple[float, float]]:
        out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True).stdout
        return [(float(u), float(m)) for u, m in (line.split(",") for line in out.strip().splitlines() if "," in line)]

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            try:
                rows = self._query()
            except Exception:  # noqa: BLE001 - a sample lost, not the run
                continue
            self.times.append(time.time())
            for i, (util, mem) in enumerate(rows):
                self.util.setdefault(i, []).append(util)
                self.mem_mb[i] = max(self.mem_mb.get(i, 0.0), mem)

    def __enter__(self) -> "GpuSampler":
        if self._thread:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()

    def figures(self) -> dict:
        return {"util": {i: sum(v) / len(v) for i, v in self.util.items() if v}, "mem_mb": dict(self.mem_mb),
                "samples": {"t": list(self.times), "util": {i: list(v) for i, v in self.util.items()}}}


def busy_in_frames(fig: dict) -> dict[int, float]:
    """Each GPU's mean utilisation while the frames ran with sessions open (the executor's `frames_began` plus its
    sessions' seconds, to the frames phase's end): the run's mean counts Ray's and the sessions' start and the metrics
    after, when the card has nothing to do."""
    ex, samples = fig.get("executor") or {}, fig.get("samples") or {}
    began, seconds = ex.get("frames_began"), ex.get("frames_seconds")
    if not began or not seconds or not samples.get("t"):
        return {}
    lo, hi = began + (ex.get("sessions_seconds") or 0.0), began + seconds
    out = {}
    for i, values in samples["util"].items():
        inside = [u for t, u in zip(samples["t"], values) if lo <= t <= hi]
        if inside:
            out[int(i)] = sum(inside) / len(inside)
    return out


class TreeCpu:
    """The CPU seconds of process `root` and every process under it (the sweep, and the Ray cluster `--ray local`
    starts under it), read from /proc twice a second: each process's last reading counts."""

    def __init__(self, every: float = 0.5):
        self.root, self.every = 0, every
        self.last: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        tick = os.sysconf("SC_CLK_TCK")
        while not self._stop.wait(self.every):
            stats = {}
            for d in Path("/proc").glob("[0-9]*"):
                try:
                    f = d.joinpath("stat").read_text().rsplit(")", 1)[1].split()
                    stats[int(d.name)] = (int(f[1]), (int(f[11]) + int(f[12])) / tick)
                except (OSError, ValueError, IndexError):
                    continue
            for pid, (_, cpu) in stats.items():
                up = pid
                while up > 1 and up != self.root and up in stats:
                    up = stats[up][0]
                if up == self.root and self.root:
                    self.last[pid] = cpu

    def seconds(self) -> float:
        return sum(self.last.values())

    def __enter__(self) -> "TreeCpu":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _shard_frames(out: Path) -> int:
    """Frames in the finished shard files of a sweep folder (what a run cut short had done)."""
    n = 0
    for f in (out / "shards").glob("shard-?????.json"):
        try:
            n += len(json.loads(f.read_text())["frames"])
        except (OSError, ValueError, KeyError):
            continue
    return n


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def _actor_pids(root: int) -> list[int]:
    """The sweep's Ray actors (`ray::ActorBody` processes descending from process `root`: `--ray local` starts its
    cluster under the sweep), oldest first."""
    pids = []
    for d in Path("/proc").glob("[0-9]*"):
        try:
            if "ActorBody" not in (d / "cmdline").read_bytes().decode(errors="replace"):
                continue
            up = int(d.name)
            while up > 1 and up != root:
                up = _parent(up)
            if up == root:
                pids.append((d.stat().st_ctime, int(d.name)))
        except OSError:
            continue
    return [p for _, p in sorted(pids)]


def _killer(out: Path, proc: subprocess.Popen, killed: list) -> None:
    """Kill the first actor once the first shard of `out` is written (every 0.2 s a look; the run's own clock)."""
    first = out / "shards" / "shard-00000.json"
    while proc.poll() is None and not first.exists():
        time.sleep(0.2)
    pids = _actor_pids(proc.pid)
    if proc.poll() is None and pids:
        os.kill(pids[0], signal.SIGKILL)
        killed.append(pids[0])


def _busy_seconds() -> float:
    """CPU seconds every process on this machine has spent (user, nice, system; /proc/stat)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    return (int(fields[0]) + int(fields[1]) + int(fields[2])) / os.sysconf("SC_CLK_TCK")


def _sweep(args, out: Path, extra: list[str], limit: float, kill: bool = False, cards: int | None = None) -> dict:
    """One configuration as its own process; its figures (`done: False` where it ran past `limit`). `cards`: the
    sweep sees the first this many GPUs (CUDA_VISIBLE_DEVICES, which Ray's local cluster counts its GPUs by)."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "cp_debug.cli.main", "sweep", "--preset", args.preset, "--backends", args.backends,
           "--level", args.level, "--n", str(args.frames), "--bisect-top", "0", "--no-html", "--out", str(out),
           *extra]
    env = dict(os.environ, CPDEBUG_SERVER="off")
    if not extra:  # in process: the first card, as Ray gives one to each actor
        env.setdefault("CUDA_VISIBLE_DEVICES", "0")
    if cards:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in range(cards))
    killed: list[int] = []
    busy0 = _busy_seconds()
    with GpuSampler() as gpu, TreeCpu() as tree:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
                                start_new_session=True)
        tree.root = proc.pid
        if kill:
            threading.Thread(target=_killer, args=(out, proc, killed), daemon=True).start()
        try:
            _, err = proc.communicate(timeout=max(1.0, limit))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the sweep and the Ray cluster it started (its session)
            proc.communicate()
            return {"done": False, "wall": time.perf_counter() - t0, "frames_done": _shard_frames(out),
                    **gpu.figures()}
        wall = time.perf_counter() - t0
    if proc.returncode not in (0, 1, 4) or not (out / "sweep.json").is_file():  # 1: Python's own, too
        sys.exit(f"{' '.join(cmd)}: exit {proc.returncode}\n{err[-3000:]}")
    cpu = tree.seconds()
    doc = json.loads((out / "sweep.json").read_text())
    ex = doc["settings"]["executor"]
    tokens = [f["token"] for f in doc["frames"]]
    steps = [line.strip().lstrip("✓ ") for line in err.splitlines() if line.strip().startswith("✓")]
    return {"done": True, "wall": wall, "frames_seconds": ex.get("frames_seconds"), "executor": ex, "steps": steps,
            "frames": len(tokens), "unique": len(set(tokens)), "killed": killed, "cpu_s": cpu,
            "others_cpu_s": max(0.0, _busy_seconds() - busy0 - cpu), **gpu.figures()}


def _folder(name: str) -> str:
    """A configuration's folder under --out: "ray 2 worker(s)" -> ray_2_workers."""
    return name.replace("(s)", "s").replace(",", "").replace(" ", "_")


def _lane_parts(lane: dict | None) -> list[str]:
    """The frames the driver ran itself while Ray and the actors started (`sweep/driver_lane.py`)."""
    if not lane:
        return []
    if lane.get("error") is not None or lane.get("open") is None:
        return [f"the driver's lane did not run: {lane.get('error')}"]
    return [f"the driver ran {lane['frames']} frames (open {lane['open']:+.1f} s, stopped {lane['stopped']:+.1f} s)"]


def _line(name: str, fig: dict, frames: int, here: dict | None, one: dict | None, workers: int,
          unit: str = "worker") -> str:
    """One configuration's figures, as printed."""
    if not fig["done"]:
        return (f"{name}: stopped at the time limit after {fig['wall']:.1f} s, {fig['frames_done']} of {frames} frames "
                f"in finished shards ({fig['frames_done'] / fig['wall']:.2f} frames/s)")
    rate = frames / fig["wall"]
    fs = fig.get("frames_seconds")
    parts = [f"{name}: {fig['wall']:.1f} s, {rate:.2f} frames/s"]
    if fs:
        parts.append(f"frames phase {fs:.1f} s = {frames / fs:.2f} frames/s")
        ready = (fig.get("executor") or {}).get("sessions_seconds")
        if ready is not None:  # Ray: the part of it before the first actor's sessions were open (in process: before)
            theirs = _actor_frames(fig.get("executor") or {}, frames)
            parts.append(f"of it {ready:.1f} s before a worker's sessions were open: {theirs / (fs - ready):.2f} "
                         f"frames/s after ({theirs} frames the workers', the driver's own left out)")
    if here is not None and here.get("done") and name != "in process":
        parts.append(f"{fig['wall'] / here['wall']:.2f}x the in-process wall")
    if one is not None and one.get("done") and workers:
        up = one["wall"] / fig["wall"]
        parts.append(f"speed-up {up:.2f}x over 1 {unit} (efficiency {up / workers:.2f})")
        if fs and one.get("frames_seconds"):
            up = one["frames_seconds"] / fs
            parts.append(f"frames phase {up:.2f}x (efficiency {up / workers:.2f})")
    ex = fig.get("executor") or {}
    if ex.get("cpus_per_worker"):
        parts.append(f"{ex['cpus_per_worker']} CPU(s) each of {ex.get('cluster_cpus')}, {ex.get('chunks')} chunks")
    if ex.get("gpu_share") and ex["gpu_share"] < 1:
        parts.append(f"{round(1 / ex['gpu_share'])} workers a card")
    line = ex.get("timeline") or {}
    if line.get("actors"):  # seconds from the frames phase's start: what came before the first sessions were open
        marks = (("began", "began"), ("imported", "torch"), ("subject", "model"), ("cuda", "CUDA"),
                 ("triton", "Triton"), ("warm", "warm"), ("fetched", "export"), ("open", "sessions"))
        parts.append(f"Ray asked for at {line.get('start', 0):+.1f} s, up at {line.get('ray', 0):+.1f} s; actors "
                     + "; ".join("-" if a is None else " ".join(f"{said} {a[k]:+.1f}" for k, said in marks if k in a)
                                 for a in line["actors"]))
    parts += _lane_parts(ex.get("driver_lane")) + _work_parts(ex) + _gpu_parts(fig)
    peaks = [p for p in ex.get("peak_memory") or [] if p]
    if peaks:
        parts.append("worker peaks " + ", ".join(
            f"{p['rss_mb'] / 1024:.1f} GiB resident" + (f" + {p['torch_cuda_mb'] / 1024:.1f} GiB torch CUDA"
                                                         if p.get("torch_cuda_mb") else "") for p in peaks))
    if fig.get("cpu_s") is not None:
        parts.append(f"CPU {fig['cpu_s']:.0f} s (other processes meanwhile: {fig['others_cpu_s']:.0f} s)")
    if fig.get("same") is not None:
        parts.append(f"report {'identical' if fig['same'] else 'DIFFERS'}")
    if fig.get("steps"):
        parts.append(f"steps: {'; '.join(fig['steps'])}")
    if fig.get("frames") is not None and fig["frames"] != fig.get("unique"):
        parts.append(f"{fig['frames']} frames, {fig['unique']} unique: A FRAME TWICE")
    return ", ".join(parts)


def _actor_frames(ex: dict, frames: int) -> int:
    """The frames the Ray workers ran: all but the driver's own (`driver_lane.py`, which runs frames until they are up
    and would otherwise count as frames run once their sessions were open — a one-card run's figure grew by 12-16 %
    so, a four-card run's hardly)."""
    work = ex.get("actor_work")
    if work:
        return sum(w["frames"] for w in work if w)
    return frames - ((ex.get("driver_lane") or {}).get("frames") or 0)


def _work_parts(ex: dict) -> list[str]:
    """Each actor's frames over its chunks' own seconds (in the actor, the queue left out), and the driver's seconds
    taking chunks back."""
    parts = []
    work = [w for w in ex.get("actor_work") or [] if w and w["seconds"] > 0]
    if work:
        parts.append("actors' own frames/s " + " ".join(f"{w['frames'] / w['seconds']:.2f}" for w in work)
                     + f" ({sum(w['frames'] for w in work)} frames)")
    opened = [a.get("open") if a else None for a in (ex.get("timeline") or {}).get("actors") or []]
    end = ex.get("frames_seconds")
    pairs = [(w["seconds"], end - t) for w, t in zip(ex.get("actor_work") or [], opened)
             if w and t is not None and end and end > t]
    if pairs:  # an actor's chunks' own seconds over its time from its sessions' opening to the frames phase's end
        parts.append(f"busy {sum(b for b, _ in pairs) / sum(a for _, a in pairs):.2f} of their time once open")
    if ex.get("driver_busy_seconds") is not None:
        parts.append(f"the driver {ex['driver_busy_seconds']:.1f} s taking chunks back")
    return parts


def _gpu_parts(fig: dict) -> list[str]:
    """Each GPU's utilisation (the run's mean, and while the frames ran) and peak memory, where sampled."""
    if not fig.get("util"):
        return []
    parts = ["GPU util " + "/".join(f"{u:.0f}" for u in fig["util"].values()) + " %"]
    busy = busy_in_frames(fig)
    if busy:
        parts.append("while the frames ran " + "/".join(f"{u:.0f}" for u in busy.values()) + " %")
    parts.append("GPU peak memory " + "/".join(f"{m / 1024:.1f}" for m in fig["mem_mb"].values()) + " GiB")
    return parts


def _fits(figs: dict, workers: int, frames: int, left: float) -> bool:
    """Whether a configuration of `workers` Ray workers (0: in process) would end within `left` seconds, judged by
    the slowest per-frame rate and the largest fixed cost measured so far (where nothing is measured: yes)."""
    done = [f for f in figs.values() if f.get("done") and f.get("frames_seconds")]
    if not done:
        return True
    fixed = max(f["wall"] - f["frames_seconds"] for f in done)
    per_worker = min(frames / f["frames_seconds"] / max(1, f["workers"]) for f in done)
    return fixed + frames / (per_worker * max(1, workers)) < left


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=120)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--backends", default="torch,ort-cpu-fp16")
    ap.add_argument("--level", default="block")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--time-limit", type=float, default=570.0)
    ap.add_argument("--resume", action="store_true", help="keep the configurations DIR/summary.json holds")
    ap.add_argument("--no-in-process", action="store_true")
    ap.add_argument("--kill", action="store_true", help="one more 2-worker run with an actor killed mid-sweep")
    ap.add_argument("--cards", default="", help="GPU counts (1,2,4): a `--ray local` sweep seeing that many cards, "
                                                "its workers the sweep's default a card (issue 87: two, four under "
                                                "MPS)")
    args = ap.parse_args()
    t_end = time.perf_counter() + args.time_limit
    root = args.out or Path(tempfile.mkdtemp(prefix="ray_scaling_"))
    root.mkdir(parents=True, exist_ok=True)
    summary = root / "summary.json"
    want = {k: getattr(args, k) for k in ("frames", "preset", "backends", "level")}
    figs: dict = {}
    if args.resume and summary.is_file():
        doc = json.loads(summary.read_text())
        figs = doc["runs"] if doc.get("settings") == want else {}
    print(f"{args.frames} frames, --preset {args.preset} --backends {args.backends} --level {args.level}, "
          f"{os.cpu_count()} CPUs, out {root}", flush=True)
    configs = ([] if args.no_in_process else [("in process", 0)])
    configs += [(f"ray {w} worker(s)", w) for w in (int(x) for x in args.workers.split(",") if x)]
    configs += [(f"ray {c} card(s)", c) for c in (int(x) for x in args.cards.split(",") if x)]
    if args.kill:
        configs.append(("ray 2 workers, one killed", 2))
    for name, w in configs:
        cards = w if "card" in name else None
        kill = "killed" in name
        if name not in figs or not figs[name].get("done"):
            left = t_end - time.perf_counter()
            if not _fits(figs, w, args.frames, left):
                print(f"{name}: skipped, would not end within the {left:.0f} s left (--resume with this --out "
                      "in another call measures it)", flush=True)
                continue
            extra = (["--ray", "local"] if cards else ["--ray", "local", "--ray-workers", str(w)] if w else [])
            fig = _sweep(args, root / _folder(name), extra, left, kill, cards)
            fig["workers"] = w
            figs[name] = fig
            # the in-process run's numbers, else the first configuration's that ended
            first = [n for n in ("in process", *(n for n, _ in configs), *figs)
                     if n != name and figs.get(n, {}).get("done")]
            base = root / _folder(first[0]) if first else None
            if fig["done"] and base is not None and (base / "sweep.json").is_file():
                fig["same"] = _numbers(root / _folder(name)) == _numbers(base)
            summary.write_text(json.dumps({"settings": want, "runs": figs}, indent=1, default=str))
        fig = figs[name]
        one = figs.get("ray 1 card(s)" if cards else "ray 1 worker(s)")
        print(_line(name, fig, args.frames, figs.get("in process"), one, w, "card" if cards else "worker"), flush=True)
        if kill and fig.get("done"):
            print(f"  killed actor pid {fig['killed']}: {fig['frames']} frames, {fig['unique']} unique", flush=True)


if __name__ == "__main__":
    main()
