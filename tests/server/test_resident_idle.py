"""The resident server's idle step (`server/resident.Server`, `idle` / `idle_after_s`): run once a wait for the next
command, on the server's main thread, outside its lock — how `cpdebug serve` gives kept CUDA sessions' arenas back
(backends/ort/ort_kept.shrink_kept). A real server on a socket of the test's own, told to stop by a real client."""

from __future__ import annotations

import io
import shutil
import tempfile
import threading
from pathlib import Path

from cp_debug.server.client import ask
from cp_debug.server.resident import Server


def test_the_idle_step_runs_once_a_wait_and_the_server_still_answers():
    folder = Path(tempfile.mkdtemp(prefix="cpd-"))  # short: a socket's path has at most 107 bytes
    sock, log, calls = folder / "s.sock", io.StringIO(), []

    def idle() -> None:
        calls.append(threading.current_thread() is threading.main_thread())
        threading.Thread(target=ask, args=(sock, "stop"), daemon=True).start()  # the accepting thread takes it

    try:
        Server(sock, lambda argv: 0, idle_s=600, log=log, idle=idle, idle_after_s=0.0).serve()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    assert calls == [True]  # once, on the main thread, though the wait went on until the stop came
    assert "told to stop" in log.getvalue() and not sock.exists()
