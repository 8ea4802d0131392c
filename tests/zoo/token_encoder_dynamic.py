"""token_encoder.py's model with its sequence axis declared as a user's file declares it: `dynamic()` beside
`build()`, returning torch.export's `dynamic_shapes` (a dict of per-input axis specs, a `Dim` with its range)."""

from __future__ import annotations

from token_encoder import build  # noqa: F401 - the file beside it, imported as a user's file imports its own


def dynamic():
    from torch.export import Dim

    return {"x": {1: Dim("seq", min=2, max=8192)}}
