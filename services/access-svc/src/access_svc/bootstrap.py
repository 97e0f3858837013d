"""The one composition root of access-svc: settings, and what `servicekit.app.run_service` wires.

Nothing is built at import time. `build_handlers` wires the use cases to any ports (unit tests pass
in-memory fakes); `bootstrap` wires them to MongoDB, the outbox relay, the signing key, the gRPC server,
the ledger and owning-unit consumers and the background schedules (checkpoints, grant expiry).

Settings (environment, prefix `LAWTRAIL_`; the base ones are in docs/development.md; defaults = local):

- `LAWTRAIL_ACCESS_SIGNING_KEY`: Ed25519 PEM private key signing grants and checkpoints; default
  `<data dir>/keys/access-grant-dev-private.pem`, created once (local development).
- `LAWTRAIL_ACCESS_STANDING_ORDERS_FILE`: the standing orders (service principals' standing grants, R13,
  R11b); default the shipped `access_svc/config/standing_orders.toml`. An invalid file stops the start.
- `LAWTRAIL_ACCESS_LEDGER_TOPICS`: topics the ledger appends (comma-separated); default every events
  topic the contracts define (`<proto package>.events` of each `lawtrail/*/v*/*_events.proto`).

| variable | default | meaning |
|---|---|---|
| `LAWTRAIL_ACCESS_CHECKPOINT_INTERVAL_S` | `60` | scheduled checkpoint signing (only when the ledger grew) |
| `LAWTRAIL_ACCESS_EXPIRY_SWEEP_S` | `30` | how often expired grants are marked EXPIRED (AccessGrantExpired) |
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import pkgutil
import tomllib
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from lawtrail.access.v1 import access_grant_pb2_grpc, access_service_pb2_grpc, ledger_service_pb2_grpc
from pydantic import Field, field_validator
from pydantic_settings import NoDecode
from servicekit.app import ConsumerSpec, Runtime, Wiring
from servicekit.auth.devtoken import ensure_keypair
from servicekit.config import ServiceSettings
from servicekit.grpc import ServiceBinding
from servicekit.topics import events_topic_of

from access_svc.adapters.ledger_store import (
    CHECKPOINTS,
    LEAF_INDEXES,
    LEAVES,
    CheckpointDocuments,
    MongoLedgerStore,
)
from access_svc.adapters.repository import (
    OWNERS,
    REQUESTS,
    MongoOwners,
    MongoRequestRepository,
    RequestDocuments,
)
from access_svc.adapters.signing import Ed25519Signer, load_private_key
from access_svc.domain.standing import StandingOrder, StandingOrderError, parse_standing_orders
from access_svc.entrypoints.consumers import (
    LEDGER_GROUP,
    OWNER_TOPICS,
    OWNERS_GROUP,
    LedgerConsumer,
    owners_router,
)
from access_svc.entrypoints.grpc_api import (
    ACCESS,
    LEDGER,
    STATUS,
    AccessApi,
    GrantStatusApi,
    LedgerApi,
    role_policy,
)
from access_svc.service_layer.handlers import AccessHandlers
from access_svc.service_layer.ledger import LedgerHandlers
from access_svc.service_layer.ports import GrantSigner, LedgerStore, Owners, RequestRepository

log = logging.getLogger(__name__)

# The ledger never parks an event it failed to append (that would be a gap): it keeps retrying, and
# its lag (lawtrail_consumer_retries_total) is what to alert on.
LEDGER_ATTEMPTS = 1_000_000_000
# Records per ledger batch (one consumer poll): one bulk write per collection and one head write each.
LEDGER_BATCH = 500


class AccessSettings(ServiceSettings):
    service_name: str = "access-svc"
    grpc_address: str = "127.0.0.1:50054"
    metrics_address: str = "127.0.0.1:9104"

    access_signing_key: Path | None = None
    access_standing_orders_file: Path | None = None
    access_ledger_topics: Annotated[list[str], NoDecode] = Field(default_factory=list)
    access_checkpoint_interval_s: float = Field(default=60.0, gt=0)
    access_expiry_sweep_s: float = Field(default=30.0, gt=0)

    @field_validator("access_ledger_topics", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value


def utc_now() -> datetime:
    """Server time: UTC to the millisecond (what the database keeps, and what checkpoints sign)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def load_standing_orders(path: Path | None = None) -> dict[str, StandingOrder]:
    """The standing orders: `path`, or the default shipped in `access_svc/config/standing_orders.toml`.
    An invalid file stops the service with the file and the reason (the order and the field)."""
    if path is None:
        where = "access_svc/config/standing_orders.toml"
        text = resources.files("access_svc").joinpath("config/standing_orders.toml").read_text("utf-8")
    else:
        where, text = str(path), path.read_text(encoding="utf-8")
    try:
        return parse_standing_orders(tomllib.loads(text))
    except (tomllib.TOMLDecodeError, StandingOrderError) as error:
        raise SystemExit(f"standing orders {where}: {error}") from None


def build_handlers(
    requests: RequestRepository,
    signer: GrantSigner,
    owners: Owners,
    ledger: LedgerStore,
    *,
    clock: Callable[[], datetime] = utc_now,
    standing_orders: dict[str, StandingOrder] | None = None,
) -> tuple[AccessHandlers, LedgerHandlers]:
    return (
        AccessHandlers(requests, signer, owners, clock, standing_orders),
        LedgerHandlers(ledger, signer, clock),
    )


def contract_event_topics() -> list[str]:
    """Every events topic the contracts define: `<package>.events` for each `*_events_pb2` module of
    `lawtrail` (servicekit.topics) — known without asking the broker."""
    import lawtrail

    found = {
        events_topic_of(importlib.import_module(m.name))
        for m in pkgutil.walk_packages(lawtrail.__path__, "lawtrail.")
        if m.name.endswith("_events_pb2")
    }
    return sorted(found)


async def ledger_topics(settings: AccessSettings) -> list[str]:
    """The configured topics, or every `lawtrail.*` events topic of the contracts."""
    topics = list(settings.access_ledger_topics) or contract_event_topics()
    log.info("ledger appends topics %s", topics)
    return topics


async def _every(seconds: float, what: str, job: Callable[[], Awaitable[object]]) -> None:
    while True:
        await asyncio.sleep(seconds)
        try:
            await job()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s failed; retrying in %.0f s", what, seconds)


async def bootstrap(rt: Runtime) -> Wiring:
    settings = rt.settings
    assert isinstance(settings, AccessSettings), "run access-svc with AccessSettings"
    key_path = settings.access_signing_key or ensure_keypair(settings.data_dir, "access-grant-dev")[0]
    signer = Ed25519Signer(load_private_key(key_path))
    source, notify = settings.event_source, rt.relay.notify
    requests = MongoRequestRepository(RequestDocuments(rt.db[REQUESTS], event_source=source, notify=notify))
    owners = MongoOwners(rt.db[OWNERS])
    store = MongoLedgerStore(
        rt.db, CheckpointDocuments(rt.db[CHECKPOINTS], event_source=source, notify=notify)
    )
    orders = load_standing_orders(settings.access_standing_orders_file)
    log.info("standing orders: %s", ", ".join(f"{o.order_id} → {o.grantee}" for o in orders.values()))
    access, ledger = build_handlers(requests, signer, owners, store, standing_orders=orders)
    topics = await ledger_topics(settings)

    background: dict[str, Callable[[], Coroutine[Any, Any, None]]] = {
        "checkpoint-schedule": lambda: _every(
            settings.access_checkpoint_interval_s, "checkpoint signing", ledger.sign_if_grown
        ),
        "grant-expiry": lambda: _every(
            settings.access_expiry_sweep_s, "grant expiry sweep", access.expire_due
        ),
    }
    return Wiring(
        services=[
            ServiceBinding(
                access_service_pb2_grpc.add_AccessServiceServicer_to_server, AccessApi(access), ACCESS
            ),
            ServiceBinding(
                access_grant_pb2_grpc.add_AccessGrantStatusServiceServicer_to_server,
                GrantStatusApi(access),
                STATUS,
            ),
            ServiceBinding(
                ledger_service_pb2_grpc.add_LedgerServiceServicer_to_server, LedgerApi(ledger), LEDGER
            ),
        ],
        role_policy=role_policy(),
        indexes={
            REQUESTS: RequestDocuments.all_indexes(),
            CHECKPOINTS: CheckpointDocuments.all_indexes(),
            LEAVES: LEAF_INDEXES,
        },
        outbox_collections=[REQUESTS, CHECKPOINTS],
        consumers=[
            ConsumerSpec(
                topics,
                LEDGER_GROUP,
                LedgerConsumer(ledger),
                max_attempts=LEDGER_ATTEMPTS,
                batch=True,
                max_records=LEDGER_BATCH,
                # One appender among replicas; the store fences with the lease's epoch.
                lease=True,
            ),
            ConsumerSpec(list(OWNER_TOPICS), OWNERS_GROUP, owners_router(owners)),
        ],
        background=background,
    )
