"""Port selection and checks, all on 127.0.0.1 (the stack never listens on other interfaces)."""

from __future__ import annotations

import contextlib
import socket

from lawtrail_local.errors import PortInUseError

HOST = "127.0.0.1"


def free_ports(count: int) -> list[int]:
    """`count` distinct ports the kernel says are free now.

    The sockets stay bound until all ports are picked, so the kernel never hands out one port twice.
    Another process may still take a port before the caller binds it; that race is small and then
    shows up as a clear `PortInUseError`, never as a hang.
    """
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((HOST, 0))
            ports.append(sock.getsockname()[1])
        return ports


def free_port() -> int:
    """A port on 127.0.0.1 that is free now (see `free_ports`)."""
    return free_ports(1)[0]


def ensure_port_free(port: int, what: str) -> None:
    """Raise `PortInUseError` naming `port` and `what` when something already listens there.

    SO_REUSEADDR mirrors what the JVM and Go set on their listeners, so a socket of an earlier run
    lingering in TIME_WAIT does not count as busy, while a live listener (on 127.0.0.1 or 0.0.0.0) does.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError as exc:
            raise PortInUseError(port, what) from exc


def is_listening(port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:`port`."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False
