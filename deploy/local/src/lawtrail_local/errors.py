"""Errors the launcher raises: each message alone must tell a developer what to do next.

`make up` and the integration tests print nothing but this message when the stack cannot start, so
it names the missing tool (and the package that brings it), the busy port, or the process that
died together with the end of its log.
"""

from __future__ import annotations


class StackError(RuntimeError):
    """The local stack (or one part of it) could not be fetched, built, started or stopped."""


class MissingToolError(StackError):
    """A program the launcher needs (java, mvn, go) is not on PATH."""


class PortInUseError(StackError):
    """A port the launcher was asked to listen on is already taken by another process."""

    def __init__(self, port: int, what: str) -> None:
        super().__init__(
            f"port 127.0.0.1:{port} (wanted by {what}) is already in use; stop whatever listens there "
            f"(`ss -ltnp 'sport = :{port}'` shows it; `python -m lawtrail_local down` if it is an earlier "
            f"`up`) or choose another port"
        )
        self.port = port
        self.what = what


class NotReadyError(StackError):
    """A started process exited, or did not become ready in time; the message ends with its log."""
