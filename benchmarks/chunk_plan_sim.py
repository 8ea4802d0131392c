"""How much of a Ray sweep's frames phase the chunk plan alone leaves idle (issue 87): `sweep/chunks.ChunkPlan` driven
as `executor._Dispatch` drives it (every actor fed `DEPTH` chunks, fed again as each chunk comes back), on a model of
the cards, no Ray, no GPU.

    python benchmarks/chunk_plan_sim.py [--frames 1000,6000] [--cards 1,2,4] [--per-card 4] [--seeds 3]

The model: four actors a card, their sessions open at 5.9-7.0 s (a 4 × H100 run's spread), a card running
`CAPACITY[k]` frames/s with k of its actors busy, shared evenly (an actor alone on a card runs faster than one of four:
a chunk sized on an early measure runs long once the others are up). Printed per configuration: when the last frame is
back, and the actors' busy share of their time from their sessions' opening to then — the figure `ray_scaling.py`
prints as "busy … of their time once open" for a real run (4 × H100, 1000 frames: 0.95 / 0.89 / 0.84 on 1 / 2 / 4
cards; 6000 frames: 1.00). What the model does not hold (Ray's round trips, the actors' own start of each chunk, the
driver) is what a real run's figure has beyond the model's.
"""

from __future__ import annotations

import argparse
import random

from cp_debug.sweep.actor import DEPTH
from cp_debug.sweep.chunks import ChunkPlan

CAPACITY = {1: 10.0, 2: 13.0, 3: 15.0, 4: 16.6}  # a card's frames/s with k actors busy (an H100's, roughly)


def simulate(frames: int, cards: int, per_card: int, seed: int, dt: float = 0.005) -> tuple[float, float]:
    """(seconds until the last frame is back, the actors' busy share of their time once open)."""
    rng = random.Random(seed)
    n = cards * per_card
    card = [w // per_card for w in range(n)]
    opens = [5.9 + rng.uniform(0.0, 1.1) for _ in range(n)]
    plan = ChunkPlan([(i, None) for i in range(frames)], range(n))
    held: dict[int, list[list[float]]] = {w: [] for w in range(n)}  # [frames left, frames, its seconds so far]

    def feed(w: int) -> None:
        while len(held[w]) < DEPTH and len(plan):
            chunk = plan.next(w)
            held[w].append([float(len(chunk)), len(chunk), 0.0])

    for w in range(n):
        feed(w)
    t, back, busy = 0.0, 0, [0.0] * n
    while back < frames:
        active = [w for w in range(n) if t >= opens[w] and held[w]]
        on_card = {c: sum(1 for w in active if card[w] == c) for c in range(cards)}
        for w in active:
            k = on_card[card[w]]
            chunk = held[w][0]
            chunk[0] -= CAPACITY[min(k, max(CAPACITY))] / k * dt
            chunk[2] += dt
            busy[w] += dt
            if chunk[0] <= 1e-9:
                held[w].pop(0)
                back += chunk[1]
                plan.tell(w, chunk[1], chunk[2])
                feed(w)
        t += dt
    return t, sum(busy) / sum(t - o for o in opens)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", default="1000,6000")
    ap.add_argument("--cards", default="1,2,4")
    ap.add_argument("--per-card", type=int, default=4)
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    for frames in (int(x) for x in args.frames.split(",")):
        for cards in (int(x) for x in args.cards.split(",")):
            runs = [simulate(frames, cards, args.per_card, seed) for seed in range(args.seeds)]
            end = sum(r[0] for r in runs) / len(runs)
            busy = sum(r[1] for r in runs) / len(runs)
            print(f"{frames} frames, {cards} card(s), {args.per_card} actors a card: last frame back at {end:.1f} s, "
                  f"busy {busy:.2f} of their time once open", flush=True)


if __name__ == "__main__":
    main()
