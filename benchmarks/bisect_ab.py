"""A bisect as its own process, this checkout against other trees' code, runs interleaved on one machine.

    python benchmarks/bisect_ab.py --tree OLD [--tree OTHER ...] [--n 5] [--preset awml-base]
                                   [--pair torch-cuda,ort-cuda-fp16]

One warm-up run of each tree (the export and weight caches, bytecode), then `--n` rounds, each round running every
tree once in an order that turns by one each round; each run a fresh `python -m cp_debug.cli.main bisect --level
all --quiet --json` (`CPDEBUG_SERVER=off`), its wall time taken around the process. Prints each tree's walls and
median, this tree's median over each other's, and whether each other tree's last report is this tree's key by key
(`json_diff.py`: times, free-memory budgets and the machine's state aside). The GPU hosts of one kind differ by up
to ~1.2× from one loan to the next: compare within one run of this script.

A tree is a checkout or a copy of its `cp_debug` folder (`git archive COMMIT cp_debug | tar -x -C DIR`). Where it
lacks the shipped weights this checkout holds (`cp_debug/**/*.pth`: a copy made small enough to travel to the GPU
device), they are linked in from this checkout, and said: without them its demo model would be another one.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run(tree: Path, args: list[str], out: Path) -> float:
    # the tree's cp_debug first; the rest of PYTHONPATH (the GPU device's /tmp/site) still before site-packages
    path = os.pathsep.join(p for p in (str(tree), os.environ.get("PYTHONPATH", "")) if p)
    env = dict(os.environ, CPDEBUG_SERVER="off", PYTHONPATH=path)
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "cp_debug.cli.main", "bisect", *args, "--json", str(out)], cwd=tree,
                       env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    if r.returncode not in (0, 1, 4):
        sys.exit(f"{tree}: exit {r.returncode}\n{r.stderr[-1500:]}")
    return wall


def missing_weights(tree: Path) -> list[str]:
    """The shipped weights of this checkout that `tree` lacks (relative paths)."""
    mine = HERE.parent
    return [str(p.relative_to(mine)) for p in sorted((mine / "cp_debug").rglob("*.pth"))
            if not (tree / p.relative_to(mine)).exists()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tree", type=Path, required=True, action="append",
                    help="another tree (a checkout, or `git archive` of one); repeatable")
    ap.add_argument("--n", type=int, default=5)
    ap.add_argument("--preset", default="awml-base")
    ap.add_argument("--pair", default="torch-cuda,ort-cuda-fp16")
    ap.add_argument("--out", type=Path, default=Path("/tmp/bisect_ab"))
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    trees = {"this": HERE.parent}
    for k, tree in enumerate(a.tree):
        trees["other" if len(a.tree) == 1 else f"other{k + 1}"] = tree.resolve()
    for tag, tree in trees.items():
        for rel in missing_weights(tree):
            (tree / rel).parent.mkdir(parents=True, exist_ok=True)
            (tree / rel).symlink_to(HERE.parent / rel)
            print(f"{tag} ({tree}) lacked the shipped {rel}: linked in from this checkout", flush=True)
    args = ["--preset", a.preset, "--level", "all", "--backends", a.pair, "--quiet"]
    for tag, tree in trees.items():
        print(f"{tag} ({tree}): first run {run(tree, args, a.out / f'{tag}-first.json'):.2f} s", flush=True)
    walls: dict[str, list[float]] = {t: [] for t in trees}
    tags = list(trees)
    for i in range(a.n):
        for tag in tags[i % len(tags):] + tags[:i % len(tags)]:
            walls[tag].append(run(trees[tag], args, a.out / f"{tag}.json"))
    med = {t: sorted(w)[len(w) // 2] for t, w in walls.items()}
    for tag, w in walls.items():
        print(f"{tag}: {', '.join(f'{x:.2f}' for x in w)}  median {med[tag]:.2f} s", flush=True)
    for tag in tags[1:]:
        print(f"this ÷ {tag}: {med['this'] / med[tag]:.2f}")
        same = subprocess.run([sys.executable, str(HERE / "json_diff.py"), str(a.out / f"{tag}.json"),
                               str(a.out / "this.json")], capture_output=True, text=True)
        print(f"{tag}'s report the same" if same.returncode == 0 else f"{tag}'s report differs:\n{same.stdout[-3000:]}")


if __name__ == "__main__":
    main()
