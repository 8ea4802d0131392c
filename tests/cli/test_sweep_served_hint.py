"""A `--ray local` sweep of its own process says, once its frames are done, how long Ray and its workers took to be
up and that a server keeps them; a sweep whose workers were kept, one in the server and one in process say nothing."""

from __future__ import annotations

from cp_debug.cli.sweep_cmd import _served_hint
from cp_debug.sweep import kept


class _Steps:
    def __init__(self):
        self.said: list[str] = []

    def note(self, text: str) -> None:
        self.said.append(text)


RAY = {"kind": "ray", "address": "local", "workers_kept": False, "sessions_seconds": 4.3,
       "timeline": {"start": -3.9, "ray": -0.2, "actors": []}}


def _said(executor: dict) -> list[str]:
    steps = _Steps()
    _served_hint(steps, executor)
    return steps.said


def test_an_own_process_ray_sweep_is_told_what_a_server_keeps():
    (line,) = _said(RAY)
    assert line.startswith("Ray and its workers took 8.2 s before the first worker's sessions were open")
    assert "`cpdebug serve`" in line


def test_kept_workers_the_server_itself_and_other_executors_say_nothing():
    assert _said({**RAY, "workers_kept": True}) == []
    assert _said({**RAY, "address": "auto"}) == []
    assert _said({"kind": "in-process", "workers": 1}) == []
    assert _said({**RAY, "sessions_seconds": None}) == []  # the driver's lane ran every frame: no worker opened
    with kept.keep_between():
        assert _said(RAY) == []
