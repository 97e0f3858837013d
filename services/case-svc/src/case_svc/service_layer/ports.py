"""What the use cases need from the outside world: storage of cases and of document content.

Adapters implement these (MongoDB in production and integration tests); unit tests use in-memory
fakes that subclass the same abstract classes.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime

from case_svc.domain.access import GrantClaims
from case_svc.domain.case import Case
from case_svc.domain.model import ActType, CaseFlag, Procedure, Stage


@dataclass(frozen=True)
class CaseFilter:
    """ListCases filters; `units` None means every unit (only the legal affairs office)."""

    units: frozenset[str] | None
    stage: Stage | None = None
    act_type: ActType | None = None
    flag: CaseFlag | None = None
    officer: str = ""
    party: str = ""
    cause_prefix: str = ""
    opened_from: datetime | None = None
    opened_to: datetime | None = None


@dataclass(frozen=True)
class ListPosition:
    """Where a page starts: strictly after this (opened_at, case_id) in newest-first order."""

    opened_at: datetime
    case_id: str


@dataclass(frozen=True)
class CaseSummary:
    case_id: str
    act_type: ActType
    procedure: Procedure | None
    unit: str
    cause: str
    responsible_officer: str
    party_names: tuple[str, ...]
    stage: Stage
    flags: tuple[CaseFlag, ...]
    opened_at: datetime


class CaseRepository(abc.ABC):
    """Cases, one document each. `add` and `save` write the case's state and its pending events
    (the embedded outbox) in one single-document write, then clear `case.events`."""

    @abc.abstractmethod
    async def get(self, case_id: str) -> Case:
        """The case; raises NotFound."""

    @abc.abstractmethod
    async def add(self, case: Case) -> None:
        """Stores a new case; raises AlreadyExists when its id is taken."""

    @abc.abstractmethod
    async def save(self, case: Case) -> None:
        """Stores a changed case if nobody changed it since it was read; raises ConcurrencyConflict."""

    @abc.abstractmethod
    def exclusive(self, case_id: str) -> AbstractAsyncContextManager[object]:
        """Held across get → decide → save: requests for one case in this process take turns instead
        of conflicting (re-entrant for `save` inside). Other processes are caught by the version."""

    @abc.abstractmethod
    async def list(self, where: CaseFilter, after: ListPosition | None, limit: int) -> Sequence[CaseSummary]:
        """Up to `limit` matching cases, newest first (opened_at, then case_id, descending)."""


class ContentStore(abc.ABC):
    """Write-once storage of document content by SHA-256 (R6: content stored immutably)."""

    @abc.abstractmethod
    async def put(self, sha256: str, content: bytes, content_type: str) -> None:
        """Stores the content under its hash; storing the same content again is a no-op."""

    @abc.abstractmethod
    async def get(self, sha256: str) -> bytes | None:
        """The content with this hash, verified against it; None when absent; DataLoss when it no
        longer matches its hash."""


class GrantVerifier(abc.ABC):
    """Access grants as case-svc trusts them: format, issuer key and signature, revocation (R16)."""

    @abc.abstractmethod
    def decode(self, token: str) -> GrantClaims:
        """The verified claims; InvalidArgument (malformed) or PermissionDenied (untrusted, bad signature)."""

    @abc.abstractmethod
    async def is_revoked(self, grant_id: str) -> bool: ...


@dataclass(frozen=True)
class DocumentRead:
    case_id: str
    unit: str
    document_id: str
    sha256: str
    reader: str
    reader_unit: str
    at: datetime
    grant_id: str
    basis: str
    purpose: str


@dataclass(frozen=True)
class CaseView:
    """A view of one case, or (case_id empty) a search, by someone outside the unit concerned."""

    viewer: str
    viewer_unit: str
    at: datetime
    rpc: str
    case_id: str = ""
    unit: str = ""
    case_ids: tuple[str, ...] = ()


class ReadLog(abc.ABC):
    """R16, R23-3: every read of a document's content, recorded (with its CaseDocumentRead event) before
    the content is returned; views and searches by people outside the unit concerned."""

    @abc.abstractmethod
    async def record(self, read: DocumentRead) -> None: ...

    @abc.abstractmethod
    async def record_view(self, view: CaseView) -> None: ...
