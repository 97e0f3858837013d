"""What access-svc's use cases need from outside: storage, the signing key, the owning-unit projection.

MongoDB adapters implement these in production and integration tests; unit tests use in-memory fakes.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime

from access_svc.domain.ledger import Checkpoint
from access_svc.domain.model import AccessRequest, Grant, RequestState, Resource


@dataclass(frozen=True)
class RequestFilter:
    """ListAccessRequests: everything (`all_units`), or the requests of `requester` plus, for a unit head,
    those covering records of `unit`."""

    all_units: bool
    requester: str
    unit: str | None
    state: RequestState | None


class RequestRepository(abc.ABC):
    @abc.abstractmethod
    async def get(self, request_id: str) -> AccessRequest:
        """The request; raises NotFound."""

    @abc.abstractmethod
    async def by_grant(self, grant_id: str) -> AccessRequest | None:
        """The request whose grant has this id."""

    @abc.abstractmethod
    async def add(self, request: AccessRequest) -> None:
        """Stores a new request with its pending events."""

    @abc.abstractmethod
    async def save(self, request: AccessRequest) -> None:
        """Stores a changed request with its pending events (optimistic version)."""

    @abc.abstractmethod
    def exclusive(self, request_id: str) -> AbstractAsyncContextManager[object]:
        """Held across get → decide → save (requests for one document take turns)."""

    @abc.abstractmethod
    async def list(
        self, where: RequestFilter, after: tuple[datetime, str] | None, limit: int
    ) -> Sequence[AccessRequest]:
        """Newest first (requested at, then id, descending)."""

    @abc.abstractmethod
    async def approved_expiring_before(self, now: datetime, limit: int) -> Sequence[str]:
        """Ids of APPROVED requests whose grant expired before `now`."""


class GrantSigner(abc.ABC):
    @abc.abstractmethod
    def sign_grant(self, grant: Grant) -> tuple[str, str]:
        """The token ("lg1.…") and the id of the key that signed it."""

    @abc.abstractmethod
    def sign(self, body: bytes) -> tuple[str, bytes]:
        """(key id, Ed25519 signature) over `body` (checkpoints)."""


class Owners(abc.ABC):
    """The owning unit of each case and recording, projected from case-svc's and media-svc's events."""

    @abc.abstractmethod
    async def units_of(self, resources: Sequence[Resource]) -> tuple[str, ...]:
        """One unit per resource, "" when not known (yet)."""

    @abc.abstractmethod
    async def held_cases(self, case_ids: Sequence[str]) -> frozenset[str]:
        """Those of `case_ids` under a long-term hold announced by retention-svc (LongTermHoldPlaced)."""


@dataclass(frozen=True)
class LedgerHead:
    size: int
    root: bytes
    # Size after the last leaf that is not itself a checkpoint event: the scheduled signer signs only
    # when this grew, or every checkpoint's own event would call for the next one.
    content_size: int


@dataclass(frozen=True)
class LedgerEntry:
    """One event to append: the serialized LedgerLeaf, its dedupe key (event source + id), its
    ce_subject, and whether it is itself a LedgerCheckpointSigned event."""

    leaf: bytes
    key: str
    subject: str = ""
    checkpoint: bool = False


class LedgerConflict(Exception):
    """The head moved under this appender (another appender took over): nothing of the batch was
    committed; the appender reloads the head, and appends only if it still holds the lease."""


class LedgerStore(abc.ABC):
    """The append-only Merkle log: leaves, the perfect-subtree nodes, the head, checkpoints."""

    @abc.abstractmethod
    async def head(self) -> LedgerHead: ...

    @abc.abstractmethod
    async def append_batch(self, entries: Sequence[LedgerEntry]) -> list[int | None]:
        """Appends the entries in order, each unless an entry with its key is in the log already (or
        earlier in the batch); answers each one's index, or None for a duplicate. All or nothing: the
        head (the commit point) is written last, conditional on the head the batch was built on;
        raises LedgerConflict when it moved. One appender at a time (the ledger consumer)."""

    async def append(
        self, leaf: bytes, key: str, *, subject: str = "", checkpoint: bool = False
    ) -> int | None:
        """One entry: `append_batch` of one."""
        return (await self.append_batch([LedgerEntry(leaf, key, subject, checkpoint)]))[0]

    @abc.abstractmethod
    async def fence(self, epoch: int) -> None:
        """From now on append with fencing token `epoch` (the appender lease's, higher on every
        take-over): writes of an appender with a lower one fail instead of overwriting entries.
        Raises LedgerConflict when a higher token was seen already."""

    @abc.abstractmethod
    async def nodes(self, coordinates: Sequence[tuple[int, int]]) -> Mapping[tuple[int, int], bytes]:
        """The stored perfect nodes (level, index); raises DataLoss for a missing one."""

    @abc.abstractmethod
    async def leaf(self, index: int) -> bytes:
        """The leaf data at `index`; raises NotFound."""

    @abc.abstractmethod
    async def index_of(self, key: str) -> int | None: ...

    @abc.abstractmethod
    async def indexes_about(self, subject: str) -> list[int]:
        """Indexes of the leaves appended with this subject (may include some past the head)."""

    @abc.abstractmethod
    async def add_checkpoint(self, checkpoint: Checkpoint) -> None: ...

    @abc.abstractmethod
    async def latest_checkpoint(self) -> Checkpoint | None: ...
