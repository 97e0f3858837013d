"""Structured logs: one JSON object per line on stderr, with the request or event being handled.

Every line carries ``request_id`` and ``event_id`` (null when not bound) so that one query finds
everything a single RPC or a single consumed event caused, across modules and awaited coroutines.
They are bound with ``log_context``, which uses a ContextVar: each asyncio task (hence each RPC and
each consumer loop) sees its own values.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

__all__ = ["JsonFormatter", "bound_fields", "configure_logging", "log_context"]

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_context: ContextVar[Mapping[str, Any]] = ContextVar("servicekit_log_context", default=_EMPTY)

# Attributes every LogRecord has; anything else on a record came from `extra=` and is logged too.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
# Always present, so that log queries need not care whether a line came from an RPC or a consumer.
_ALWAYS = ("request_id", "event_id")


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Bind ``fields`` to every log line emitted inside the block (nested blocks add to the outer)."""
    token = _context.set(MappingProxyType({**_context.get(), **fields}))
    try:
        yield
    finally:
        _context.reset(token)


def bound_fields() -> Mapping[str, Any]:
    """The fields currently bound by ``log_context`` (e.g. to echo the request id to a caller)."""
    return _context.get()


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line: ts, level, service, logger, msg, bound context, extras."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "service": self._service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        line.update(dict.fromkeys(_ALWAYS))
        line.update(_context.get())
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        # default=str: an extra that is not JSON (a datetime, an ObjectId) must not lose the line.
        return json.dumps(line, default=str, ensure_ascii=False)


def configure_logging(service_name: str, level: str = "INFO") -> None:
    """Send every logger's records to stderr as JSON lines; replaces handlers set up before.

    Called once by the runner before anything else logs. Kafka's and Mongo's client libraries are
    chatty at INFO (every connection, every rebalance step), so they are held at WARNING unless the
    service itself runs at DEBUG.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service_name))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    quiet = "DEBUG" if level.upper() == "DEBUG" else "WARNING"
    for noisy in ("aiokafka", "kafka", "pymongo"):
        logging.getLogger(noisy).setLevel(quiet)
