"""Issue 32's measure, on whatever device it finds: cp_debug's runs side by side with the plain pipelines, in one run.

    python benchmarks/gpu_speed.py [--preset awml-base] [--tree OLD_CHECKOUT ...] [--n 100] [--only ROW,...]

Rows (each run as its own child process; wall time and the child's peak host RSS from wait4):
  bisect     `cpdebug bisect --level all` of the two pairs (GPU: torch-cuda,ort-cuda-fp16 and ort-cuda,ort-cuda-fp16;
             CPU: torch,ort-cpu-fp16 and ort,ort-cpu-fp16), first (a fresh export cache) and warm, against the
             plain pipelines of the same two backends on the same scan as a process (model, export, sessions, one
             frame each): the ratio is the issue's bar;
  served     the warm bisects of the two pairs in a process of their own against the same through `cpdebug serve`
             (the resident server: the first command it serves, then runs interleaved with the own-process ones),
             the server's start and its peak RSS, and whether the reports are the same (less wall times);
  bench      `cpdebug bench` per frame per backend (median) and each stage's share of it;
  sweep      the sweep's frame loop (`--level block`, in process, `--n` held-out frames) in frames/s against the
             plain pipelines run back to back on the same frames (benchmarks/sweep_throughput.py's two loops);
  backbone   (CUDA only) the backbone/neck/head alone in ONNX Runtime, input and outputs bound on the device,
             median of 10 runs, FP32 and FP16 at each conv-algorithm setting (DEFAULT, EXHAUSTIVE, HEURISTIC,
             HEURISTIC + prefer_nhwc), and the same with the input copied in and outputs out through the host.
`--tree PATH` (repeatable) runs every row but `backbone` again with PATH's code (PYTHONPATH=PATH), so a before/after
table comes from one run on one machine. On a CPU-only machine the GPU rows are skipped; `--preset demo --n 4` is a
quick check. The first rows of a fresh machine also compile numba's kernels into its cache.
`CPDEBUG_TREE_COMMIT=SHA` names this tree's commit where its .git is not its own (the device machine's copy).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ROWS = ("bisect", "served", "bench", "sweep", "backbone")


# -- the children (run with a tree's cp_debug on PYTHONPATH) -----------------------------------------------------
def child_plain(preset: str, labels: list[str]) -> None:
    """The plain pipelines of `labels` on the scan bisect runs (the model's synthetic scan of seed 0), as a process:
    the model, the ONNX export where a backend needs it, each backend's sessions and one frame each."""
    from cp_debug.backends.spec import BackendSpec
    from cp_debug.recipes.centerpoint.eval.backend_pipeline import BackendPipeline
    from cp_debug.eval.session import load_weights
    from cp_debug.recipes import catalog
    from cp_debug.lidar.synthetic import synthetic_scene
    from cp_debug.recipes.centerpoint.export import export_onnx

    cfg = _preset(preset)
    points = synthetic_scene(0, cfg).points
    model = load_weights(preset, None, False, 0, catalog.recipe()).model
    specs = {label: BackendSpec.parse(label) for label in labels}
    with tempfile.TemporaryDirectory() as tmp:
        onnx_dir = None
        if any(s.framework != "torch" for s in specs.values()):
            onnx_dir = Path(tmp)
            export_onnx(model, cfg, onnx_dir, sample_points=points)
        for label, spec in specs.items():
            with BackendPipeline(label, spec, cfg, model, onnx_dir=onnx_dir) as pipe:
                pipe.run(points)


def child_sweep(preset: str, labels: list[str], n: int) -> None:
    """Seconds of the plain pipelines and of the sweep's frame loop over the same `n` held-out frames, as JSON. The
    two loops are the tree's own `benchmarks/sweep_throughput.py` (run in the tree's folder), written to its API."""
    own = Path.cwd() / "benchmarks"
    sys.path.insert(0, str(own if (own / "sweep_throughput.py").is_file() else HERE))
    from sweep_throughput import _plain, _sweep

    plain = _plain(preset, n, tuple(labels))
    with tempfile.TemporaryDirectory() as tmp:
        swept, peaks, gpu = _sweep(preset, n, Path(tmp) / "sweep", tuple(labels), "block")
    print(json.dumps({"plain_s": plain, "sweep_s": swept, "n": n, "peak_rss_kib": peaks, "gpu_mib": gpu}))


def child_backbone(preset: str) -> None:
    """The backbone/neck/head alone in ONNX Runtime CUDA at each conv-algorithm setting, as JSON rows."""
    import numpy as np
    import onnx

    from cp_debug.eval.session import load_weights

    from cp_debug.recipes import catalog
    from cp_debug.lidar.synthetic import synthetic_scene
    from cp_debug.precision.fp16 import convert_to_fp16
    from cp_debug.recipes.centerpoint.export import BACKBONE_FILE, export_onnx

    cfg = _preset(preset)
    model = load_weights(preset, None, False, 0, catalog.recipe()).model
    with tempfile.TemporaryDirectory() as tmp:
        export_onnx(model, cfg, Path(tmp), sample_points=synthetic_scene(0, cfg).points)
        fp32 = onnx.load(str(Path(tmp) / BACKBONE_FILE))
    graphs = {"fp32": fp32.SerializeToString(), "fp16": convert_to_fp16(fp32).SerializeToString()}
    nx, ny = cfg.grid_size
    x = np.maximum(np.random.RandomState(0).randn(1, cfg.pillar_channels, ny, nx), 0).astype(np.float32)
    rows = []
    for algo, nhwc in (("DEFAULT", False), ("EXHAUSTIVE", False), ("HEURISTIC", False), ("HEURISTIC", True)):
        for precision, graph in graphs.items():
            opts = {"device_id": "0", "use_tf32": "0", "cudnn_conv_algo_search": algo}
            if nhwc:
                opts["prefer_nhwc"] = "1"
            device, host = _time_session(graph, opts, x)
            rows.append({"algo": algo + (" + prefer_nhwc" if nhwc else ""), "precision": precision,
                         "device_ms": device, "host_ms": host})
    print(json.dumps(rows))


def _time_session(graph: bytes, cuda_options: dict, x) -> tuple[float, float]:
    """(median ms with the input and outputs bound on the device, median ms through the host) of one session."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(graph, so, providers=[("CUDAExecutionProvider", cuda_options), "CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    bound = sess.io_binding()
    bound.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0))
    for out in sess.get_outputs():
        bound.bind_output(out.name, "cuda")
    return _median_ms(lambda: sess.run_with_iobinding(bound)), _median_ms(lambda: sess.run(None, {name: x}))


def _preset(name: str):
    """The preset's config, wherever the tree keeps `get_preset` (presets.py; config.py in older trees)."""
    try:
        from cp_debug.models.centerpoint.presets import get_preset
    except ImportError:
        from cp_debug.models.centerpoint.config import get_preset
    return get_preset(name)


def _median_ms(fn, warmup: int = 3, repeat: int = 10) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return sorted(times)[len(times) // 2]


# -- the driver (imports nothing heavy: a child's peak RSS starts from its parent's size at fork) -----------------
def measure(cmd: list[str], env: dict, cwd: Path = ROOT) -> tuple[float, float, int, str]:
    """(wall seconds, the child's own peak RSS GB, exit code, stdout) of one child process, run in `cwd` (a tree's
    root: `python -m` puts the working folder before PYTHONPATH)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=cwd)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        text, tail = out.read().decode(errors="replace"), err.read().decode(errors="replace").strip().splitlines()
    if code not in (0, 1, 4):
        print(f"  ! {' '.join(cmd[2:6])}… exited {code}: {tail[-1] if tail else ''}", flush=True)
    return wall, usage.ru_maxrss / 1e6, code, text


class Tree:
    def __init__(self, path: Path, cache: Path):
        self.path = path.resolve()
        self.cache = cache
        try:  # a checkout's own commit; a plain copy of the code (not a git top level) is known by its name only
            top = subprocess.run(["git", "-C", str(self.path), "rev-parse", "--show-toplevel"], check=True,
                                 capture_output=True, text=True).stdout.strip()
            self.commit = "?" if Path(top).resolve() != self.path else subprocess.run(
                ["git", "-C", str(self.path), "rev-parse", "--short", "HEAD"], check=True, capture_output=True,
                text=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            self.commit = "?"
        if self.path == ROOT and os.environ.get("CPDEBUG_TREE_COMMIT"):
            # a copy of the working tree whose .git is another's (the device machine's: its HEAD is stale), named by
            # whoever copied it
            self.commit = os.environ["CPDEBUG_TREE_COMMIT"]
        self.label = f"{self.path.name}@{self.commit}"
        self.slug = self.label.replace("@?", "")  # file names the device hands back (no "?" in them)

    def env(self, fresh_cache: bool = False) -> dict:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(self.path), os.environ.get("PYTHONPATH", "")]),
               "CPDEBUG_SERVER": "off"}  # each command in a process of its own (served_rows says otherwise)
        if fresh_cache and self.cache.exists():
            shutil.rmtree(self.cache)
        env["CPDEBUG_CACHE_DIR"] = str(self.cache)
        return env

    def cli(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "cp_debug.cli.main", *args]

    def child(self, *args: str) -> list[str]:
        return [sys.executable, str(HERE / "gpu_speed.py"), "--child", *args]


def _cuda() -> bool:
    probe = "import torch; print(torch.cuda.is_available())"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    return out.stdout.strip() == "True"


def bisect_rows(trees: list[Tree], preset: str, pairs: list[str], out: Path) -> None:
    print(f"\n### `bisect --preset {preset} --level all` against the plain pipelines of the same two backends")
    print("| backends | tree | first: wall / RSS | warm: wall / RSS | plain: wall / RSS | warm ÷ plain (time, "
          "memory) | export cache | verdict |")
    print("|---|---|---|---|---|---|---|---|")
    for pair in pairs:
        for tree in trees:
            figures = []
            for k, fresh in enumerate((True, False)):
                js = out / f"bisect-{tree.slug}-{pair.replace(',', '_')}-{k}.json"
                wall, rss, code, _ = measure(tree.cli("bisect", "--preset", preset, "--level", "all", "--backends",
                                                      pair, "--quiet", "--json", str(js)), tree.env(fresh), tree.path)
                figures.append((wall, rss, code, js))
            pw, prss, _, _ = measure(tree.child("plain", preset, pair), tree.env(), tree.path)
            (fw, frss, _, _), (ww, wrss, code, js) = figures
            cache, verdict = "?", f"exit {code}"
            if js.is_file():
                d = json.loads(js.read_text())
                cache = ", ".join(f"{v}" for v in (d["settings"].get("export_cache") or {}).values()) or "—"
                cand = pair.split(",")[1]
                verdict = f"exit {code}, first divergent {d['first_divergent'].get(cand)}"
            print(f"| {pair} | {tree.label} | {fw:.1f} s / {frss:.2f} GB | **{ww:.1f} s** / {wrss:.2f} GB | "
                  f"{pw:.1f} s / {prss:.2f} GB | {ww / pw:.2f}×, {wrss / prss:.2f}× | {cache} | {verdict} |",
                  flush=True)


def served_rows(trees: list[Tree], preset: str, pairs: list[str], out: Path, runs: int = 3) -> None:
    print(f"\n### `bisect --preset {preset} --level all`, warm: a process of its own against `cpdebug serve`")
    print("| backends | tree | own process: walls (median) | served: first; then walls (median) | served ÷ own | "
          "same report | server |")
    print("|---|---|---|---|---|---|---|")
    for i, tree in enumerate(trees):
        if not (tree.path / "cp_debug" / "cli" / "serve_cmd.py").is_file():
            print(f"| — | {tree.label} | (no `cpdebug serve` in this tree) | | | | |")
            continue
        home = out / f"server-{i}"
        home.mkdir(mode=0o700, exist_ok=True)
        own_env = tree.env()
        env = {**own_env, "CPDEBUG_SERVER_SOCKET": str(home / "s.sock")}
        env.pop("CPDEBUG_SERVER")
        up, _, code, _ = measure(tree.cli("serve", "--quiet", "--idle-minutes", "30"), env, tree.path)
        status = subprocess.run(tree.cli("serve", "--status"), env=env, cwd=tree.path, capture_output=True,
                                text=True).stdout
        pid = status.split("pid ", 1)[1].split(":", 1)[0] if "pid " in status else None
        for pair in pairs:
            base = ["bisect", "--preset", preset, "--level", "all", "--backends", pair, "--quiet", "--json"]
            tag = f"{pair.replace(',', '_')}-t{i}"  # each tree's reports apart: compared across trees below
            measure(tree.cli(*base, str(out / f"own-{tag}-warm.json")), own_env, tree.path)  # the export cache
            first, _, _, _ = measure(tree.cli(*base, str(out / f"served-{tag}-first.json")), env, tree.path)
            own, served = [], []
            for _ in range(runs):
                own.append(measure(tree.cli(*base, str(out / f"own-{tag}.json")), own_env, tree.path)[0])
                served.append(measure(tree.cli(*base, str(out / f"served-{tag}.json")), env, tree.path)[0])
            same = _same_report(out / f"own-{tag}.json", out / f"served-{tag}.json")
            mo, ms = sorted(own)[len(own) // 2], sorted(served)[len(served) // 2]
            print(f"| {pair} | {tree.label} | {', '.join(f'{w:.2f}' for w in own)} (**{mo:.2f} s**) | {first:.2f}; "
                  f"{', '.join(f'{w:.2f}' for w in served)} (**{ms:.2f} s**) | {ms / mo:.2f} | {same} | "
                  f"up in {up:.1f} s (exit {code}), peak RSS {_peak_rss_gb(pid)} |", flush=True)
        subprocess.run(tree.cli("serve", "--stop", "--quiet"), env=env, cwd=tree.path, capture_output=True)
    for i, tree in enumerate(trees[1:], 1):  # the same report in every tree (a change that only saves time)
        for pair in pairs:
            tag = pair.replace(",", "_")
            print(f"- {pair}: {tree.label}'s own-process report the same as {trees[0].label}'s: "
                  f"{_same_report(out / f'own-{tag}-t0.json', out / f'own-{tag}-t{i}.json')}")


def _same_report(a: Path, b: Path) -> str:
    """"yes" where two bisect reports are equal less their wall times (the run's and its phases'), the store's
    budgets (free memory) and how many times a third-party line was logged (ONNX Runtime logs some once per session
    made, and a served run makes fewer: its server keeps them)."""
    import re
    try:
        docs = [json.loads(p.read_text()) for p in (a, b)]
    except (OSError, ValueError) as err:
        return f"? ({err})"
    for d in docs:
        d.pop("wall_s", None)
        d.get("settings", {}).pop("peak_memory", None)
        d.get("settings", {}).pop("phases", None)  # walls: a served run has no load or export of its own
        for key in ("budget_mb", "device_budget_mb"):
            d.get("settings", {}).get("reference_store", {}).pop(key, None)
        for w in d.get("third_party_warnings") or ():
            w.pop("count", None)
        d["warnings"] = [re.sub(r"^(third-party \([^)]*\)), ×\d+\)", r"\1)", w) if isinstance(w, str) else w
                         for w in d.get("warnings") or ()]
    if docs[0] == docs[1]:
        return "yes"
    return f"**no** ({', '.join(_differing(docs[0], docs[1])[:4])})"


def _differing(a, b, path: str = "") -> list[str]:
    """The key paths where two JSON documents differ (lists element by element)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [p for k in sorted(set(a) | set(b), key=str) for p in _differing(a.get(k), b.get(k), f"{path}.{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [p for i, (x, y) in enumerate(zip(a, b)) for p in _differing(x, y, f"{path}[{i}]")]
    return [] if a == b else [path.lstrip(".") or "(the whole)"]


def _peak_rss_gb(pid: str | None) -> str:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return f"{int(line.split()[1]) / 1e6:.2f} GB"
    except (OSError, ValueError, TypeError):
        pass
    return "?"


def bench_rows(trees: list[Tree], preset: str, backends: str, repeat: int, out: Path) -> None:
    print(f"\n### `bench --preset {preset}` per frame (median ms; each stage's share of the total)")
    stages = ("voxelize", "input_features", "voxel_encoder", "scatter", "backbone_neck_head", "decode_nms")
    print("| backend | tree | total | " + " | ".join(stages) + " |")
    print("|---|---|---|" + "---|" * len(stages))
    for tree in trees:
        js = out / f"bench-{tree.slug}.json"
        _, _, code, _ = measure(tree.cli("bench", "--preset", preset, "--backends", backends, "--repeat", str(repeat),
                                         "--json", str(js), "--quiet"), tree.env(), tree.path)
        if not js.is_file():
            print(f"| {backends} | {tree.label} | exit {code} |")
            continue
        med = {(r["backend"], r["stage"]): r["median_ms"] for r in json.loads(js.read_text())["rows"]}
        for backend in backends.split(","):
            total = med.get((backend, "total"), float("nan"))
            cells = [f"{med.get((backend, s), float('nan')):.1f} ({med.get((backend, s), 0) / total:.0%})"
                     for s in stages]
            print(f"| {backend} | {tree.label} | **{total:.1f}** | " + " | ".join(cells) + " |", flush=True)


def sweep_rows(trees: list[Tree], preset: str, pair: str, n: int) -> None:
    print(f"\n### sweep frame loop (`--level block`, {n} held-out frames, in process) against the plain pipelines")
    print("| backends | tree | sweep frames/s | plain frames/s | ratio (target ≥ 0.5) | peak RSS frame 10 → last | "
          "GPU memory frame 10 → last |")
    print("|---|---|---|---|---|---|---|")
    for tree in trees:
        _, _, code, text = measure(tree.child("sweep", preset, pair, str(n)), tree.env(), tree.path)
        try:
            d = json.loads(text.strip().splitlines()[-1])
        except (ValueError, IndexError):
            print(f"| {pair} | {tree.label} | exit {code} |")
            continue
        peaks, gpu = d["peak_rss_kib"], d["gpu_mib"]
        k = min(9, len(peaks) - 1)
        print(f"| {pair} | {tree.label} | **{d['n'] / d['sweep_s']:.2f}** | {d['n'] / d['plain_s']:.2f} | "
              f"{d['plain_s'] / d['sweep_s']:.2f} | {peaks[k] / 2**20:.2f} → {peaks[-1] / 2**20:.2f} GiB | "
              f"{gpu[k]:.0f} → {gpu[-1]:.0f} MiB |", flush=True)


def backbone_rows(tree: Tree, preset: str) -> None:
    print(f"\n### backbone/neck/head alone in ONNX Runtime CUDA ({preset}; median of 10 ms; {tree.label})")
    print("| conv algorithm | FP32 (device-bound) | FP16 (device-bound) | FP32 via host | FP16 via host |")
    print("|---|---|---|---|---|")
    _, _, code, text = measure(tree.child("backbone", preset), tree.env(), tree.path)
    try:
        rows = json.loads(text.strip().splitlines()[-1])
    except (ValueError, IndexError):
        print(f"| exit {code} |")
        return
    by = {(r["algo"], r["precision"]): r for r in rows}
    for algo in dict.fromkeys(r["algo"] for r in rows):
        a, b = by[(algo, "fp32")], by[(algo, "fp16")]
        print(f"| {algo} | {a['device_ms']:.1f} | **{b['device_ms']:.1f}** | {a['host_ms']:.1f} | "
              f"{b['host_ms']:.1f} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="awml-base")
    ap.add_argument("--tree", action="append", default=[], type=Path, help="another checkout, run beside this one")
    ap.add_argument("--n", type=int, default=None, help="sweep frames (default 100 on CUDA, 4 on the CPU)")
    ap.add_argument("--repeat", type=int, default=20, help="bench repeats")
    ap.add_argument("--only", default=",".join(ROWS), help=f"rows to run, of {','.join(ROWS)}")
    ap.add_argument("--pair", action="append", default=None, help="bisect only these REF,CAND pairs (repeatable)")
    ap.add_argument("--out", type=Path, default=None, help="folder for the reports (default: a temporary one)")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        what, preset, *rest = args.child
        if what == "plain":
            child_plain(preset, rest[0].split(","))
        elif what == "sweep":
            child_sweep(preset, rest[0].split(","), int(rest[1]))
        else:
            child_backbone(preset)
        return
    only = set(args.only.split(","))
    out = args.out or Path(tempfile.mkdtemp(prefix="cpdebug-speed-"))
    out.mkdir(parents=True, exist_ok=True)
    trees = [Tree(p, out / f"cache-{i}") for i, p in enumerate([ROOT, *args.tree])]
    cuda = _cuda()
    host = os.uname().nodename
    print(f"## issue 32 speed, {time.strftime('%Y-%m-%d %H:%M')} on {host} ({'CUDA' if cuda else 'CPU only'}, "
          f"{os.cpu_count()} cores); trees: {', '.join(t.label for t in trees)}; reports in {out}")
    if cuda:
        pairs, bench, sweep = ["torch-cuda,ort-cuda-fp16", "ort-cuda,ort-cuda-fp16"], \
            "torch-cuda,ort-cuda,ort-cuda-fp16", "torch-cuda,ort-cuda-fp16"
    else:
        pairs, bench, sweep = ["torch,ort-cpu-fp16", "ort,ort-cpu-fp16"], "torch,ort,ort-cpu-fp16", \
            "torch,ort-cpu-fp16"
    if "bisect" in only:
        bisect_rows(trees, args.preset, args.pair or pairs, out)
    if "served" in only:
        served_rows(trees, args.preset, args.pair or pairs, out)
    if "bench" in only:
        bench_rows(trees, args.preset, bench, args.repeat, out)
    if "sweep" in only:
        sweep_rows(trees, args.preset, sweep, args.n or (100 if cuda else 4))
    if "backbone" in only:
        if cuda:
            backbone_rows(trees[0], args.preset)
        else:
            print("\n(backbone row skipped: no CUDA device)")


if __name__ == "__main__":
    main()
