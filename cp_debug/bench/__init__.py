"""Latency benchmarks (floor 11): per-stage timings of CenterPoint's staged pipeline per backend.

Per-stage latency per backend; a recipe's bench rows are its `bench` plug-in (CenterPoint's
`recipes/centerpoint/bench.py`: `STAGES`, `BackendPipeline`, `int8_calibration`), asked through `--recipe`.
"""
