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

from scaling_lines import config_line
from serve_ctl import serving

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


def _sweep(args, out: Path, extra: list[str], limit: float, kill: bool = False, cards: int | None = None,
           served: int = 0) -> dict:
    """One configuration as its own process; its figures (`done: False` where it ran past `limit`). `cards`: the
    sweep sees the first this many GPUs (CUDA_VISIBLE_DEVICES, which Ray's local cluster counts its GPUs by).
    `served`: through a `cpdebug serve` of its own, after a sweep of this many frames through it (the cluster and
    workers it leaves are the measured sweep's, `sweep/kept.py`); the CPU figure is then left out."""
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
    if served:
        env.pop("CPDEBUG_SERVER")
        warm = [*cmd[:cmd.index("--n") + 1], str(served), *cmd[cmd.index("--n") + 2:]]
        warm[warm.index("--out") + 1] = f"{out}-warm"
        shutil.rmtree(f"{out}-warm", ignore_errors=True)
        with serving(env, warm) as said:
            fig = _measured(cmd, env, out, limit - said["seconds"], kill, killed)
        fig.update(cpu_s=None, warm=said)
        return fig
    return _measured(cmd, env, out, limit, kill, killed)


def _measured(cmd: list, env: dict, out: Path, limit: float, kill: bool, killed: list) -> dict:
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
    ap.add_argument("--served", type=int, default=0, metavar="N", help="every configuration (but --kill's) through "
                    "a `cpdebug serve` of its own, after an N-frame sweep through it (that leaves its Ray workers "
                    "up)")
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
    served = "served " if args.served else ""
    configs = ([] if args.no_in_process else [(f"{served}in process", 0)])
    configs += [(f"{served}ray {w} worker(s)", w) for w in (int(x) for x in args.workers.split(",") if x)]
    configs += [(f"{served or 'ray '}{c} card(s)", c) for c in (int(x) for x in args.cards.split(",") if x)]
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
            fig = _sweep(args, root / _folder(name), extra, left, kill, cards, 0 if kill else args.served)
            fig["workers"] = w
            figs[name] = fig
            # the in-process run's numbers, else the first configuration's that ended
            first = [n for n in (f"{served}in process", *(n for n, _ in configs), *figs)
                     if n != name and figs.get(n, {}).get("done")]
            base = root / _folder(first[0]) if first else None
            if fig["done"] and base is not None and (base / "sweep.json").is_file():
                fig["same"] = _numbers(root / _folder(name)) == _numbers(base)
            summary.write_text(json.dumps({"settings": want, "runs": figs}, indent=1, default=str))
        fig = figs[name]
        one = figs.get(f"{served or 'ray '}1 card(s)" if cards else f"{served}ray 1 worker(s)")
        print(config_line(name, fig, args.frames, figs.get(f"{served}in process"), one, w,
                          "card" if cards else "worker"),
              flush=True)
        if kill and fig.get("done"):
            print(f"  killed actor pid {fig['killed']}: {fig['frames']} frames, {fig['unique']} unique", flush=True)


if __name__ == "__main__":
    main()
