"""Samples for any model (floor 7½): the `--inputs` / `--data` / `--calib` sets a user brings (`sets.py`), one sample's
outputs judged by the noise model (`judge.py`), and the task metrics that say what a deployment changes over a set
(`tasks.py`: top-1/top-5 and argmax agreement, cosine, SNR, accuracy, a user's own). Sweep, eval and fix use them for
every model given as `--torch` / `--onnx`; no recipe lives here.

The sets are read one at a time and checked against the graph once (`sets.py`, which fix, sweep and eval read); the
task metrics: top-1/top-5 and argmax agreement, cosine, SNR, accuracy, a user's FUNC (`tasks.py`). Shapes in trtexec's
spelling (`NAME:DxDxD[,…]`; a min / opt / max profile) are read once in `shapes.py`, for the sweep's shape range and
the kit alike, which also names a graph's dynamic axes in a range and makes seeded inputs at any shape of it.
"""
