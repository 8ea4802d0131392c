"""Latency benchmarks: per-stage timings of CenterPoint's staged pipeline per backend."""
