"""The audit ledger's use cases (R4, R23-3): append consumed events, sign checkpoints, answer proofs.

Proofs are assembled from the stored perfect-subtree nodes by `lawtrail_merkle` and are only ever asked
for sizes the head has reached, so a node being written by the appender is never read half-way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime

import lawtrail_merkle as merkle
from servicekit.errors import InvalidArgument, NotFound

from access_svc.domain.ledger import ORIGIN, Checkpoint, checkpoint_body
from access_svc.domain.model import text
from access_svc.service_layer.ports import GrantSigner, LedgerEntry, LedgerStore

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


class LedgerHandlers:
    def __init__(
        self, store: LedgerStore, signer: GrantSigner, clock: Clock, *, origin: str = ORIGIN
    ) -> None:
        self._store = store
        self._signer = signer
        self._clock = clock
        self._origin = origin

    async def append(
        self, leaf: bytes, key: str, *, subject: str = "", checkpoint: bool = False
    ) -> int | None:
        return await self._store.append(leaf, key, subject=subject, checkpoint=checkpoint)

    async def append_batch(self, entries: Sequence[LedgerEntry]) -> list[int | None]:
        """A consumer poll's events, appended together (one bulk write per collection, then the head)."""
        return await self._store.append_batch(entries) if entries else []

    async def fence(self, epoch: int) -> None:
        await self._store.fence(epoch)

    async def entries_about(self, subject: str) -> list[int]:
        if not subject.strip():
            raise InvalidArgument(
                "ce_subject is required (1–200 characters): a case, recording or request id"
            )
        subject = text(subject, "ce_subject", limit=200)
        size = (await self._store.head()).size
        return sorted(i for i in await self._store.indexes_about(subject) if i < size)

    async def sign_checkpoint(self) -> Checkpoint:
        head = await self._store.head()
        now = self._clock()
        key_id, signature = self._signer.sign(checkpoint_body(self._origin, head.size, head.root, now))
        checkpoint = Checkpoint(self._origin, head.size, head.root, now, key_id, signature)
        await self._store.add_checkpoint(checkpoint)
        return checkpoint

    async def sign_if_grown(self) -> Checkpoint | None:
        """The scheduled signing: a new checkpoint when the tree grew since the last one."""
        latest = await self._store.latest_checkpoint()
        head = await self._store.head()
        if head.size == 0 or (latest is not None and latest.tree_size >= head.content_size):
            return None
        return await self.sign_checkpoint()

    async def latest_checkpoint(self) -> Checkpoint:
        return await self._store.latest_checkpoint() or await self.sign_checkpoint()

    async def _size_ok(self, size: int, field: str) -> None:
        head = await self._store.head()
        if not 1 <= size <= head.size:
            raise InvalidArgument(f"{field}: {size} is outside 1..{head.size} (the ledger's current size)")

    async def inclusion_proof(self, index: int, size: int) -> tuple[bytes, list[bytes]]:
        await self._size_ok(size, "tree_size")
        if not 0 <= index < size:
            raise InvalidArgument(f"leaf_index: {index} is outside a tree of {size} leaves")
        plan = merkle.inclusion_plan(index, size)
        nodes = dict(await self._store.nodes([*merkle.needed_nodes(plan), (0, index)]))
        return nodes[(0, index)], merkle.inclusion_proof(index, size, nodes)

    async def consistency_proof(self, first: int, second: int) -> list[bytes]:
        await self._size_ok(second, "second_size")
        if not 1 <= first <= second:
            raise InvalidArgument(f"first_size: {first} is outside 1..{second}")
        plan = merkle.consistency_plan(first, second)
        return merkle.consistency_proof(first, second, await self._store.nodes(merkle.needed_nodes(plan)))

    async def entry(self, *, index: int | None = None, key: str = "") -> tuple[int, bytes]:
        if key:
            found = await self._store.index_of(key)
            if found is None or found >= (await self._store.head()).size:
                raise NotFound(f"no ledger entry for event {key!r} (yet)")
            index = found
        assert index is not None
        head = await self._store.head()
        if not 0 <= index < head.size:
            raise InvalidArgument(f"leaf_index: {index} is outside 0..{head.size - 1}")
        return index, await self._store.leaf(index)
