"""The one composition root of case-svc: settings, rules, repositories, handlers, API and consumers.

Nothing is built at import time. `build_handlers` wires the use cases to any ports (unit tests pass
in-memory fakes); `bootstrap` wires them to MongoDB, the outbox relay, the gRPC server and the
consumer of media events, for `servicekit.app.run_service` (see `__main__`).
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Annotated

from lawtrail.case.v1 import case_service_pb2_grpc
from pydantic import Field, field_validator
from pydantic_settings import NoDecode
from servicekit.app import ConsumerSpec, Runtime, Wiring
from servicekit.auth.devtoken import ensure_keypair
from servicekit.clock import Clock, utc_now
from servicekit.config import ServiceSettings
from servicekit.grpc import ServiceBinding

from case_svc.adapters.access_grants import (
    READS,
    REVOKED,
    Ed25519GrantVerifier,
    MongoReadLog,
    MongoRevocations,
    ReadDocuments,
    load_public_keys,
)
from case_svc.adapters.repository import (
    CASES,
    CONTENTS,
    CaseDocuments,
    MongoCaseRepository,
    MongoContentStore,
)
from case_svc.domain.rules import RuleBook
from case_svc.entrypoints.consumers import (
    ACCESS_GROUP_ID,
    ACCESS_TOPIC,
    GROUP_ID,
    MEDIA_TOPIC,
    access_events_router,
    media_events_router,
)
from case_svc.entrypoints.grpc_api import SERVICE, CaseApi, role_policy
from case_svc.service_layer.handlers import CaseHandlers
from case_svc.service_layer.ports import CaseRepository, ContentStore

INBOX = "inbox"


class CaseSettings(ServiceSettings):
    """case-svc's settings: servicekit's (prefix LAWTRAIL_) with case-svc's defaults, plus the rules."""

    service_name: str = "case-svc"
    grpc_address: str = "127.0.0.1:50051"
    metrics_address: str = "127.0.0.1:9101"
    # LAWTRAIL_CASE_RULES_FILE: the unit's own rules (stages and checklists); default: the shipped file.
    case_rules_file: Path | None = None
    # LAWTRAIL_CASE_GRANT_PUBLIC_KEYS: PEM files of trusted access-grant issuers (comma-separated);
    # default: access-svc's local key <data dir>/keys/access-grant-dev-public.pem (created once).
    case_grant_public_keys: Annotated[list[Path], NoDecode] = Field(default_factory=list)

    @field_validator("case_grant_public_keys", mode="before")
    @classmethod
    def _split_paths(cls, value: object) -> object:
        if isinstance(value, str):
            return [Path(part.strip()) for part in value.split(",") if part.strip()]
        return value


def load_rules(path: Path | None = None) -> RuleBook:
    """The rules configuration: `path`, or the default shipped in `case_svc/config/case_rules.toml`.
    An invalid file stops the service with a message naming the entry."""
    if path is None:
        text = resources.files("case_svc").joinpath("config/case_rules.toml").read_text(encoding="utf-8")
        where = "case_svc/config/case_rules.toml"
    else:
        text = path.read_text(encoding="utf-8")
        where = str(path)
    try:
        return RuleBook.from_mapping(tomllib.loads(text))
    except (tomllib.TOMLDecodeError, ValueError) as exc:
        raise SystemExit(f"case rules {where} are invalid: {exc}") from exc


def build_handlers(
    cases: CaseRepository,
    contents: ContentStore,
    *,
    rules: RuleBook | None = None,
    clock: Clock = utc_now,
) -> CaseHandlers:
    return CaseHandlers(cases, contents, rules or load_rules(), clock)


async def bootstrap(rt: Runtime) -> Wiring:
    settings = rt.settings
    rules = load_rules(getattr(settings, "case_rules_file", None))
    # The repository and the relay both write `cases` through servicekit's per-document locks
    # (servicekit.doclock: FerretDB v1 loses concurrent updates of one document).
    documents = CaseDocuments(rt.db[CASES], event_source=settings.event_source, notify=rt.relay.notify)
    handlers = build_handlers(MongoCaseRepository(documents), MongoContentStore(rt.db[CONTENTS]), rules=rules)
    key_paths = list(getattr(settings, "case_grant_public_keys", [])) or [
        ensure_keypair(settings.data_dir, "access-grant-dev")[1]
    ]
    revocations = MongoRevocations(rt.db[REVOKED])
    verifier = Ed25519GrantVerifier(load_public_keys(key_paths), revocations)
    handlers.grants = verifier
    handlers.reads = MongoReadLog(
        ReadDocuments(rt.db[READS], event_source=settings.event_source, notify=rt.relay.notify)
    )
    return Wiring(
        services=[
            ServiceBinding(
                case_service_pb2_grpc.add_CaseServiceServicer_to_server, CaseApi(handlers), SERVICE
            )
        ],
        role_policy=role_policy(),
        indexes={CASES: CaseDocuments.all_indexes(), READS: ReadDocuments.all_indexes()},
        outbox_collections=[CASES, READS],
        consumers=[
            ConsumerSpec([MEDIA_TOPIC], GROUP_ID, media_events_router(handlers), inbox_collection=INBOX),
            ConsumerSpec([ACCESS_TOPIC], ACCESS_GROUP_ID, access_events_router(verifier, revocations)),
        ],
    )
