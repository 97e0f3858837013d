"""One writing process per service database on FerretDB, enforced by a lease document.

FerretDB v1 applies an update as read → change in Go → write back, with no transaction around it
(``internal/handler/common/update.go``), on SQLite and PostgreSQL alike: two processes updating one
document race and lose changes, and a ``{_id, version}`` filter is no guard between processes.
``servicekit.doclock`` serialises the writes of one process; this module makes sure there is only
one such process (ADR 0004, ADR 0007). On MongoDB (production) it does nothing: the database is
atomic per document and any number of replicas may run.

The lease is the document ``{_id: "writer"}`` of the collection ``writer_lease`` in the service's own
database: ``holder`` (host, pid and start time of the process), ``until`` (expiry). A process
starting while another holds an unexpired lease refuses to start, naming the holder. The holder
renews it every third of ``ttl_s``; a holder that cannot renew (lost it, or the database is away
longer than the lease) stops the service. A crashed holder's lease is taken over when it expires,
or at once when the holder ran on this host and its process is gone (``kill -9`` then restart).

Named leases (``name=``, ``everywhere=True``) use the same document shape for one job that only one
process of a service may do at a time on any database (MongoDB included) — e.g. a consumer group whose
handler must be the only writer of what it writes (``servicekit.app.ConsumerSpec.lease``). Every
acquisition raises the document's ``epoch``, a fencing token: what the holder writes can carry it,
and writes of a former holder with a lower one can be refused by the store (the audit ledger does).
``acquire_when_free`` waits for such a lease; ``release`` expires it instead of deleting it, so the
epoch only ever grows. ``run_while_leased`` is the one way to run a job under such a lease: wait for it,
keep it, run the job, stop the job when the lease is lost and release the lease when the job is stopped
(the leased consumers of ``servicekit.app`` and compliance-svc's faust app use it).

A first lease is an insert (the unique ``_id`` lets one of racing starters win). FerretDB cannot make
a take-over atomic (two starters could both update the document), so a starter taking over writes
its claim, waits ``settle_s`` (far longer than one update takes), and reads again: only the process
whose claim is still there proceeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, PyMongoError

from servicekit.doclock import _is_ferretdb

__all__ = ["LEASE_COLLECTION", "WriterLease", "WriterLeaseHeld", "WriterLeaseLost", "run_while_leased"]

log = logging.getLogger(__name__)

LEASE_COLLECTION = "writer_lease"
_LEASE_ID = "writer"


class WriterLeaseHeld(RuntimeError):
    """Another live process writes this service's database on FerretDB."""


class WriterLeaseLost(WriterLeaseHeld):
    """The holder could not renew its lease: another process took it over, or the database was away
    for longer than the lease lasts (raised by ``WriterLease.keep``)."""


def _process_start_ticks(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot (/proc), so a reused pid is not mistaken."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _this_process() -> dict[str, Any]:
    pid = os.getpid()
    return {
        "host": socket.gethostname(),
        "pid": pid,
        "ticks": _process_start_ticks(pid),
        "token": uuid.uuid4().hex,
    }


def _holder_dead_here(holder: dict[str, Any]) -> bool:
    """Whether ``holder`` ran on this host and its process no longer exists (a crash)."""
    if holder.get("host") != socket.gethostname():
        return False
    pid = holder.get("pid")
    if not isinstance(pid, int):
        return False
    return _process_start_ticks(pid) != holder.get("ticks")


class WriterLease:
    """The single-writer lease of one service database (a no-op on MongoDB)."""

    def __init__(
        self,
        db: AsyncDatabase[dict[str, Any]],
        *,
        service: str,
        ttl_s: float = 15.0,
        settle_s: float = 0.25,
        ferretdb: bool | None = None,
        name: str = _LEASE_ID,
        everywhere: bool = False,
    ) -> None:
        """``ferretdb``: None asks the server (``buildInfo``); tests may say which policy to apply.
        ``name``: the lease document's ``_id`` (the single-writer lease is ``"writer"``);
        ``everywhere``: applies on MongoDB too (named leases)."""
        self._collection = db[LEASE_COLLECTION]
        self._id = name
        self._everywhere = everywhere
        self.epoch = 0
        self._database = db.name
        self._service = service
        self._ttl = timedelta(seconds=ttl_s)
        self._settle_s = settle_s
        self._ferretdb = ferretdb
        self._me = _this_process()
        self.held = False

    async def applies(self) -> bool:
        """Whether a lease is needed: on FerretDB, or everywhere for a named lease that says so."""
        if self._everywhere:
            return True
        if self._ferretdb is None:
            self._ferretdb = await _is_ferretdb(self._collection)
        return self._ferretdb

    def _describe(self, doc: dict[str, Any]) -> str:
        holder = doc.get("holder") or {}
        until: datetime = doc["until"]
        until = until.replace(tzinfo=UTC) if until.tzinfo is None else until
        return (
            f"process {holder.get('pid')} on host {holder.get('host')!r}, lease until "
            f"{until.isoformat(timespec='seconds')}"
        )

    async def acquire(self) -> None:
        """Take the lease or raise ``WriterLeaseHeld`` naming the live holder (no-op on MongoDB)."""
        if not await self.applies():
            log.info(
                "database %s is MongoDB: no single-writer lease (replicas may run side by side)",
                self._database,
            )
            return
        now = datetime.now(UTC)
        current = await self._collection.find_one({"_id": self._id})
        claim = {"holder": self._me, "until": now + self._ttl, "service": self._service, "released": False}
        if current is None:
            try:
                # The unique `_id` makes racing inserts safe: exactly one succeeds, no settling needed.
                await self._collection.insert_one({"_id": self._id, **claim, "epoch": 1})
                self.held, self.epoch = True, 1
                log.info("holding the %s lease of database %s", self._id, self._database)
                return
            except DuplicateKeyError:
                current = await self._collection.find_one({"_id": self._id})
        if current is not None:
            until: datetime = current["until"]
            until = until.replace(tzinfo=UTC) if until.tzinfo is None else until
            holder = current.get("holder") or {}
            if until > now and holder.get("token") != self._me["token"] and not _holder_dead_here(holder):
                raise self._refusal(current)
            if current.get("released"):
                # Given up at a clean stop (a named lease keeps its document, for the epoch): routine.
                log.info("taking the %s lease of %s, released at a clean stop", self._id, self._database)
            elif until <= now:
                log.warning(
                    "taking over the expired %s lease of %s (%s)",
                    self._id,
                    self._database,
                    self._describe(current),
                )
            else:
                log.warning(
                    "taking over the %s lease of %s from a crashed process (%s)",
                    self._id,
                    self._database,
                    self._describe(current),
                )
            # Conditional on the lease as read: a holder that renewed meanwhile keeps it.
            await self._collection.update_one(
                {"_id": self._id, "until": current["until"]}, {"$set": claim, "$inc": {"epoch": 1}}
            )
        # Racing starters may both have written a claim: the last write wins; wait until any racing
        # update has landed, then only the process whose claim is stored goes on.
        await asyncio.sleep(self._settle_s)
        stored = await self._collection.find_one({"_id": self._id})
        if stored is None or (stored.get("holder") or {}).get("token") != self._me["token"]:
            raise self._refusal(stored or {"until": now, "holder": {}})
        self.held, self.epoch = True, int(stored.get("epoch", 0))
        log.info("holding the %s lease of database %s (epoch %d)", self._id, self._database, self.epoch)

    async def acquire_when_free(self, poll_s: float | None = None) -> None:
        """Wait until the lease is free (released, expired, or its holder died here), then take it."""
        poll = poll_s if poll_s is not None else self._ttl.total_seconds() / 3
        waiting = False
        while True:
            try:
                await self.acquire()
                return
            except WriterLeaseHeld as held:
                if not waiting:
                    log.info("waiting for the %s lease: %s", self._id, held)
                    waiting = True
            await asyncio.sleep(poll)

    def _refusal(self, doc: dict[str, Any]) -> WriterLeaseHeld:
        if self._id != _LEASE_ID:
            return WriterLeaseHeld(
                f"the {self._id} lease of {self._service} (database {self._database!r}) is held by "
                f"{self._describe(doc)}"
            )
        return WriterLeaseHeld(
            f"another {self._service} process writes database {self._database!r} on FerretDB "
            f"({self._describe(doc)}): refusing to start a second writer. FerretDB v1 applies racing "
            "updates of one document non-atomically, so one process per service may write its database "
            "(ADR 0004, ADR 0007); stop the other process, or if it crashed on another host wait until "
            f"its lease expires (at most {self._ttl.total_seconds():.0f} s). On MongoDB any number of "
            "replicas may run."
        )

    async def keep(self) -> None:
        """Renew the lease every ttl/3 until cancelled; raise ``WriterLeaseLost`` when it was lost."""
        if not self.held:
            await asyncio.Event().wait()  # MongoDB: nothing to renew; run until cancelled
        interval = self._ttl.total_seconds() / 3
        last_renewed = datetime.now(UTC)
        while True:
            await asyncio.sleep(interval)
            try:
                result = await self._collection.update_one(
                    {"_id": self._id, "holder.token": self._me["token"]},
                    {"$set": {"until": datetime.now(UTC) + self._ttl}},
                )
            except PyMongoError:
                if datetime.now(UTC) - last_renewed > self._ttl:
                    raise WriterLeaseLost(
                        f"could not renew the {self._id} lease of {self._database!r} for longer than "
                        "it lasts: another process may have taken it over; stopping"
                    ) from None
                log.warning("could not renew the single-writer lease; retrying", exc_info=True)
                continue
            if result.matched_count == 0:
                raise WriterLeaseLost(
                    f"the {self._id} lease of {self._database!r} was taken over by another process; "
                    "stopping what it guards"
                )
            last_renewed = datetime.now(UTC)

    async def release(self) -> None:
        """Give the lease up at a clean stop, so the next process starts at once (a named lease is
        expired, not deleted: its epoch must keep growing)."""
        if not self.held:
            return
        mine = {"_id": self._id, "holder.token": self._me["token"]}
        with contextlib.suppress(PyMongoError):
            if self._id == _LEASE_ID:
                await self._collection.delete_one(mine)
            else:
                await self._collection.update_one(
                    mine, {"$set": {"until": datetime.now(UTC), "released": True}}
                )
        self.held = False


async def run_while_leased(lease: WriterLease, work: Callable[[], Awaitable[None]], *, what: str) -> None:
    """Run ``work()`` only while this process holds ``lease``: wait until the lease is free, take it,
    renew it while ``work`` runs, and stop whichever of the two is still running when the other ends.

    ``work`` runs until cancelled (it may read ``lease.epoch``, the fencing token, first). Ends:

    - the lease is lost (taken over, or not renewable for its whole ttl): ``work`` is cancelled and
      ``WriterLeaseLost`` raised; the lease is not released (it is no longer this process's). The
      caller decides: stop the process, or call this again to wait for the lease as a standby;
    - ``work`` fails: its error is raised; ``work`` returns: ``RuntimeError("<what> ended")`` (a job
      guarded by a lease is not expected to end by itself) — the lease is released either way;
    - cancelled (the service stops): ``work`` is cancelled and awaited, then the lease is released, so
      a standby takes over at once instead of at expiry. ``work`` is cancelled once: a further
      cancellation while it stops waits for that stop instead of interrupting it.
    """
    await lease.acquire_when_free()
    keeper = asyncio.create_task(lease.keep(), name=f"lease of {what}")
    worker = asyncio.ensure_future(work())
    try:
        done, _ = await asyncio.wait({keeper, worker}, return_when=asyncio.FIRST_COMPLETED)
        if worker in done:
            worker.result()
            raise RuntimeError(f"{what} ended")
        error = keeper.exception()
        if isinstance(error, WriterLeaseLost):
            lease.held = False  # another process's now: nothing to release
            raise error
        raise error or RuntimeError(f"the lease of {what} stopped being renewed")
    finally:
        for task in (worker, keeper):
            task.cancel()
        # Let the work finish stopping even when this task is cancelled again meanwhile (the service
        # stops while the lease is being lost): a second cancellation reaching the work in the middle of
        # its stop would leave it half stopped — a faust app then keeps tasks that never end, and the
        # process cannot exit.
        stopped = asyncio.gather(worker, keeper, return_exceptions=True)
        cancelled = False
        while not stopped.done():
            try:
                await asyncio.shield(stopped)
            except asyncio.CancelledError:
                cancelled = True
        if lease.held:
            await lease.release()
        if cancelled:
            raise asyncio.CancelledError
