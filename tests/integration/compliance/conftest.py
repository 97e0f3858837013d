"""Fixtures shared by the compliance-svc integration tests that build a faust app in the test process."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from lawtrail_local.stack import Stack
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase


@pytest.fixture
async def db(stack: Stack, request: pytest.FixtureRequest) -> AsyncIterator[AsyncDatabase[dict[str, Any]]]:
    """A fresh database on the stack's FerretDB for one test, dropped after it."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.mongo_uri, tz_aware=True)
    name = f"{request.module.__name__.rsplit('.', 1)[-1].removeprefix('test_')}_{uuid.uuid4().hex[:10]}"
    yield client[name]
    await client.drop_database(name)
    await client.close()
