"""The bug report (floor 9): the failing segment of a bisect run as a standalone bundle anyone can re-run.

- `window`: the window search — shrink a diverging segment to the smallest node range that still diverges.
- `grow`: the other way — when no single segment diverges (accumulated error), grow the window upstream from the
  first divergent tensor until the candidate diverges on the reference's values.
- `fp16_cuts`: a window as the lockstep computed it on ort-cpu-fp16 (float16 rounding at every cut).
- `writer`: the bundle directory (subgraph, boundary inputs, both outputs, manifest, README), written whole.
- `polygraphy`: the bundle's Polygraphy inputs/outputs and command lines.
- `_repro_template.py`: the one-file repro script (no cp_debug import), filled with the run's settings.
- `from_run`: a bisect run (engine + report) → cut, transform, shrink or grow, write.

The window searches are judges for bisect's strategies (`bisect/cures/window_search.py`: `RangeShrinkSearch`,
`WindowGrowSearch`).

Stands above bisect (it reads a run) and report (it formats numbers the same way); nothing below imports it.
"""
