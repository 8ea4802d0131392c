"""The lines `ray_scaling.py` prints, one a configuration: walls, frames phases and speed-ups, the workers' frames and
busy share, the timeline before the first sessions, the driver's lane, the GPUs, memory, CPU and the report's check."""

from __future__ import annotations

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


def _lane_parts(lane: dict | None) -> list[str]:
    """The frames the driver ran itself while Ray and the actors started (`sweep/driver_lane.py`)."""
    if not lane:
        return []
    if lane.get("error") is not None or lane.get("open") is None:
        return [f"the driver's lane did not run: {lane.get('error')}"]
    return [f"the driver ran {lane['frames']} frames (open {lane['open']:+.1f} s, stopped {lane['stopped']:+.1f} s)"]


def config_line(name: str, fig: dict, frames: int, here: dict | None, one: dict | None, workers: int,
          unit: str = "worker") -> str:
    """One configuration's figures, as printed."""
    if not fig["done"]:
        return (f"{name}: stopped at the time limit after {fig['wall']:.1f} s, {fig['frames_done']} of {frames} frames "
                f"in finished shards ({fig['frames_done'] / fig['wall']:.2f} frames/s)")
    rate = frames / fig["wall"]
    fs = fig.get("frames_seconds")
    parts = [f"{name}: {fig['wall']:.1f} s, {rate:.2f} frames/s"]
    parts += _served_parts(fig)
    if fs:
        parts.append(f"frames phase {fs:.1f} s = {frames / fs:.2f} frames/s")
        ready = (fig.get("executor") or {}).get("sessions_seconds")
        if ready is not None:  # Ray: the part of it before the first actor's sessions were open (in process: before)
            theirs = _actor_frames(fig.get("executor") or {}, frames)
            parts.append(f"of it {ready:.1f} s before a worker's sessions were open: {theirs / (fs - ready):.2f} "
                         f"frames/s after ({theirs} frames the workers', the driver's own left out)")
    if here is not None and here.get("done") and not name.endswith("in process"):
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
        if all("chunks" in w for w in work):
            parts.append("chunks (longest) " + " ".join(f"{w['chunks']} ({w['longest']})" for w in work))
    opened = [a.get("open") if a else None for a in (ex.get("timeline") or {}).get("actors") or []]
    end = ex.get("frames_seconds")
    pairs = [(w["seconds"], end - max(t, 0.0)) for w, t in zip(ex.get("actor_work") or [], opened)
             if w and t is not None and end and end > t]  # a kept worker (`--served`) was open before the frames
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


def _served_parts(fig: dict) -> list[str]:
    """A run through a server of its own (`ray_scaling.py --served`): what went before it, and whether it found the
    workers the sweep before left."""
    warm, ex = fig.get("warm"), fig.get("executor") or {}
    if not warm:
        return []
    kept = "" if ex.get("kind") != "ray" else ", the workers kept" if ex.get("workers_kept") else \
        ", the workers NOT KEPT"
    return [f"after the server's start and a {warm['frames']}-frame sweep through it ({warm['seconds']:.1f} s){kept}"]
