"""Free loopback ports, for the --workers supervisor's children and the local servers."""

from __future__ import annotations

import socket

LOCALHOST = "127.0.0.1"

# Ports handed out by free_port() in this process: never hand the same one out twice,
# so two servers started back to back cannot both be given a port nobody holds yet.
_handed_out: set[int] = set()


class NoFreePort(RuntimeError):
    """The kernel kept handing out ports already given away."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (the kernel picks it; not reused here)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((LOCALHOST, 0))
            port = int(sock.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    raise NoFreePort("could not find a free TCP port on 127.0.0.1")
