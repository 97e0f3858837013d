"""media-svc's consumer of access-svc's events: AccessRevoked → the grant is refused from now on (R16).

Group `media-svc.access-events`. The revocation is stored (`revoked_grants`) for restarts and other
replicas, and registered in this process's verifier at once, so a download with a revoked grant is
refused within the consumer's poll interval of the revocation (tests/integration/access measures it).
"""

from __future__ import annotations

from lawtrail.access.v1 import access_events_pb2
from servicekit.messaging.consumer import TypeRouter
from servicekit.messaging.envelope import Envelope
from servicekit.topics import events_topic_of

from media_svc.adapters.access_grants import Ed25519GrantVerifier, MongoRevocations

ACCESS_TOPIC = events_topic_of(access_events_pb2)
GROUP_ID = "media-svc.access-events"


def access_events_router(verifier: Ed25519GrantVerifier, revocations: MongoRevocations) -> TypeRouter:
    router = TypeRouter()

    async def revoked(event: access_events_pb2.AccessRevoked, envelope: Envelope) -> None:
        await revocations.record(event.grant_id, event.reason)
        verifier.revoke(event.grant_id)

    router.on(access_events_pb2.AccessRevoked, revoked)
    return router
