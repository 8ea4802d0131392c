from __future__ import annotations

import pytest

from tests.cli.served import cpdebug, serve_env


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One server for the module's tests that leave it up: (socket, env, work folder)."""
    home = tmp_path_factory.mktemp("srv")
    home.chmod(0o700)
    sock = home / "s.sock"
    env = serve_env(sock)
    p = cpdebug(["serve", "--quiet", "--idle-minutes", "10"], env, home)
    assert p.returncode == 0, p.stderr
    yield sock, env, home
    cpdebug(["serve", "--stop", "--quiet"], env, home)
