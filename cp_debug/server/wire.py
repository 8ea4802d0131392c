"""The wire between the client and the server: one JSON object a line over the Unix socket, file descriptors (the
caller's standard streams) beside the first."""

from __future__ import annotations

import json
import socket

_LINE_MAX = 1 << 24  # a request's JSON line (the environment is most of it)


def send(sock: socket.socket, msg: dict, fds: list[int] | None = None) -> None:
    data = (json.dumps(msg) + "\n").encode()
    if fds:
        socket.send_fds(sock, [data], fds)
    else:
        sock.sendall(data)


class Lines:
    """JSON lines read from a socket, and the file descriptors that came with them."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = b""
        self.fds: list[int] = []

    def next(self) -> dict | None:
        """The next message, or None at the end of the connection."""
        while b"\n" not in self.buf:
            if len(self.buf) > _LINE_MAX:
                raise ValueError("message too long")
            data, fds, _, _ = socket.recv_fds(self.sock, 1 << 16, 8)
            self.fds.extend(fds)
            if not data:
                return None
            self.buf += data
        line, _, self.buf = self.buf.partition(b"\n")
        return json.loads(line)

