"""The tolerance modes a run judges by (`noise.py` judges by them), on their own: the options are checked before any
model loads (`api/bisect_request.options_group`, issue 118 item 3), and this module imports nothing heavy (the noise
model's numpy stays out of a command's start)."""

from __future__ import annotations

from cp_debug.errors import BadInputError

MODES = ("model", "fixed")


def check_mode(mode: str | None, atol: float | None = None, rtol: float | None = None) -> str:
    """The tolerance mode a run judges by: the one given, else 'fixed' where an --atol/--rtol is given (a tolerance
    the user sets is one to judge by, not to ignore), else 'model'."""
    if mode is None:
        return "fixed" if atol is not None or rtol is not None else "model"
    if mode not in MODES:
        raise BadInputError(f"--tolerance-mode {mode!r}: use 'model' (the precision's noise model) or 'fixed' "
                            "(element-wise atol/rtol)")
    return mode
