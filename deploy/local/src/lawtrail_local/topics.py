"""The topics of deploy/local/topics.toml, and creating them on a broker.

Topics are created explicitly, never auto-created, because their partition counts are part of the
contract: a faust table whose source topic has another count fails with `PartitionsMismatch`.
"""

from __future__ import annotations

import asyncio
import tomllib
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import for_code

from lawtrail_local.errors import StackError
from lawtrail_local.layout import TOPICS_FILE

_TOPIC_ALREADY_EXISTS = 36
_T = TypeVar("_T")


@dataclass(frozen=True)
class Topic:
    """One Kafka topic: its name and partition count (replication is 1 on the single local broker)."""

    name: str
    partitions: int


def parse_topics(text: str, source: str = "topics.toml") -> list[Topic]:
    """Parse and validate the `[[topic]]` tables of a topics file; errors name `source`."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise StackError(f"{source}: {exc}") from exc
    entries = data.get("topic", [])
    if not isinstance(entries, list):
        raise StackError(f"{source}: `topic` must be an array of tables ([[topic]])")
    topics: list[Topic] = []
    for i, entry in enumerate(entries, start=1):
        name, partitions = entry.get("name"), entry.get("partitions")
        if not isinstance(name, str) or not name:
            raise StackError(f"{source}: topic #{i} needs a non-empty string `name`")
        if isinstance(partitions, bool) or not isinstance(partitions, int) or partitions < 1:
            raise StackError(f"{source}: topic {name!r} needs an integer `partitions` >= 1")
        unknown = set(entry) - {"name", "partitions"}
        if unknown:
            raise StackError(f"{source}: topic {name!r} has unknown keys {sorted(unknown)}")
        if any(t.name == name for t in topics):
            raise StackError(f"{source}: topic {name!r} is declared twice")
        topics.append(Topic(name, partitions))
    return topics


def load_topics(path: Path = TOPICS_FILE) -> list[Topic]:
    """The topics declared in `path` (by default deploy/local/topics.toml)."""
    return parse_topics(path.read_text(), str(path))


def create_topics(bootstrap: str, topics: list[Topic], timeout: float = 30.0) -> list[str]:
    """Create the missing `topics` on the broker at `bootstrap` and return the names it created.

    Idempotent, so `up` works on a stack with persistent data; an existing topic with another
    partition count is an error rather than silently different from what the code expects.
    """
    try:
        return _run(asyncio.wait_for(_create_topics(bootstrap, topics, int(timeout * 1000)), timeout))
    except TimeoutError as exc:
        raise StackError(f"creating topics on {bootstrap} did not finish within {timeout:.0f} s") from exc


def _run(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run `coro` to completion even when the caller (a test) already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def _create_topics(bootstrap: str, topics: list[Topic], request_timeout_ms: int) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=request_timeout_ms)
    try:
        await admin.start()
        response = await admin.create_topics(
            [NewTopic(t.name, t.partitions, replication_factor=1) for t in topics],
            timeout_ms=request_timeout_ms,
        )
        created, existing = [], []
        for name, code, *message in response.topic_errors:
            if code == 0:
                created.append(name)
            elif code == _TOPIC_ALREADY_EXISTS:
                existing.append(name)
            else:
                detail = message[0] if message and message[0] else for_code(code).__name__
                raise StackError(f"creating topic {name!r} on {bootstrap} failed: {detail}")
        if existing:
            await _check_partitions(admin, [t for t in topics if t.name in existing])
        return created
    finally:
        await admin.close()


async def _check_partitions(admin: Any, topics: list[Topic]) -> None:
    described = {d["topic"]: d for d in await admin.describe_topics([t.name for t in topics])}
    for topic in topics:
        actual = len(described[topic.name]["partitions"])
        if actual != topic.partitions:
            raise StackError(
                f"topic {topic.name!r} exists with {actual} partitions but topics.toml says "
                f"{topic.partitions}; `python -m lawtrail_local down --purge` drops the local data"
            )
