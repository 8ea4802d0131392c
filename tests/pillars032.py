"""The tiny preset's modules on the demo's 0.32 m pillars over +-25.6 m (160 x 160, as tiny was before it took 0.64 m
pillars and then +-12.8 m), as a config file `--preset` reads (its model is still called tiny): the shipped demo
weights were trained on 0.32 m pillars, and the tests that judge what those weights detect run them on the pillars
they know."""

from pathlib import Path

TINY_032 = str(Path(__file__).resolve().parent / "data" / "centerpoint" / "pillars-032" / "tiny.py")
