"""R4, R23-3: the audit ledger's use cases — exactly-once append, signed checkpoints, proofs that verify
offline (lawtrail_merkle) and fail for any change."""

from __future__ import annotations

from datetime import timedelta

import lawtrail_merkle as merkle
import pytest
from access_support import World
from access_svc.domain.ledger import checkpoint_body
from access_svc.entrypoints.consumers import LedgerConsumer
from cryptography.exceptions import InvalidSignature
from google.protobuf.wrappers_pb2 import StringValue
from lawtrail.access.v1 import ledger_service_pb2
from servicekit.errors import InvalidArgument
from servicekit.messaging.consumer import Delivery
from servicekit.messaging.envelope import Envelope


async def fill(world: World, n: int) -> None:
    for i in range(n):
        await world.ledger.append(f"event-{i}".encode(), f"src\x1fid-{i}")


async def test_r23_each_event_is_appended_once_in_order(world: World) -> None:
    await fill(world, 5)
    assert await world.ledger.append(b"event-2", "src\x1fid-2") is None  # a redelivery
    assert await world.ledger.append(b"event-5", "src\x1fid-5") == 5
    assert world.store.leaves == [f"event-{i}".encode() for i in range(6)]
    assert (await world.store.head()).root == merkle.root_of_leaves(world.store.leaves)


async def test_r23_checkpoints_are_signed_over_size_and_root(world: World) -> None:
    await fill(world, 7)
    checkpoint = await world.ledger.sign_checkpoint()
    assert checkpoint.tree_size == 7
    assert checkpoint.key_id == world.signer.key_id
    public = world.key.public_key()
    public.verify(checkpoint.signature, checkpoint.body())
    forged = checkpoint_body(checkpoint.origin, 8, checkpoint.root_hash, checkpoint.signed_at)
    with pytest.raises(InvalidSignature):
        public.verify(checkpoint.signature, forged)


async def test_r23_scheduled_signing_only_when_the_ledger_grew_by_more_than_checkpoints(world: World) -> None:
    assert await world.ledger.sign_if_grown() is None  # empty ledger
    await fill(world, 3)
    first = await world.ledger.sign_if_grown()
    assert first is not None
    # The checkpoint's own event comes back through the consumer: no new checkpoint for it alone.
    await world.ledger.append(b"checkpoint-event", "src\x1fcp-1", checkpoint=True)
    world.clock.advance(timedelta(minutes=1))
    assert await world.ledger.sign_if_grown() is None
    await world.ledger.append(b"real", "src\x1freal")
    second = await world.ledger.sign_if_grown()
    assert second is not None
    assert second.tree_size == 5


async def test_r23_inclusion_and_consistency_proofs_verify(world: World) -> None:
    await fill(world, 21)
    first = await world.ledger.sign_checkpoint()
    await fill_more(world, 21, 40)
    second = await world.ledger.sign_checkpoint()
    for index in (0, 7, 20):
        leaf_hash, proof = await world.ledger.inclusion_proof(index, first.tree_size)
        assert leaf_hash == merkle.leaf_hash(f"event-{index}".encode())
        merkle.verify_inclusion(index, first.tree_size, leaf_hash, proof, first.root_hash)
    proof = await world.ledger.consistency_proof(first.tree_size, second.tree_size)
    merkle.verify_consistency(first.tree_size, second.tree_size, first.root_hash, second.root_hash, proof)


async def fill_more(world: World, start: int, end: int) -> None:
    for i in range(start, end):
        await world.ledger.append(f"event-{i}".encode(), f"src\x1fid-{i}")


async def test_r23_proofs_for_sizes_beyond_the_ledger_are_refused_with_the_field(world: World) -> None:
    await fill(world, 4)
    with pytest.raises(InvalidArgument, match=r"tree_size: 5 is outside 1\.\.4"):
        await world.ledger.inclusion_proof(0, 5)
    with pytest.raises(InvalidArgument, match="leaf_index: 4 is outside"):
        await world.ledger.inclusion_proof(4, 4)
    with pytest.raises(InvalidArgument, match="first_size: 0"):
        await world.ledger.consistency_proof(0, 4)


async def test_r23_entries_by_event_key(world: World) -> None:
    await fill(world, 3)
    assert await world.ledger.entry(key="src\x1fid-1") == (1, b"event-1")
    assert await world.ledger.entry(index=2) == (2, b"event-2")


async def test_r23_the_ledger_consumer_appends_a_poll_as_one_batch_once_per_event(world: World) -> None:

    events = [Envelope.of(StringValue(value=str(i)), source="/s", subject=f"case-{i}") for i in range(3)]
    poll = [
        Delivery(e, "lawtrail.case.v1.events", 0, offset) for offset, e in enumerate([*events, events[1]])
    ]
    consumer = LedgerConsumer(world.ledger)
    await consumer(poll)
    await consumer(poll[:2])  # redelivered after a crash before the commit
    assert world.store.batches == [4, 2]
    assert len(world.store.leaves) == 3
    leaf = ledger_service_pb2.LedgerLeaf.FromString(world.store.leaves[2])
    assert (leaf.topic, leaf.ce_id, leaf.ce_subject) == ("lawtrail.case.v1.events", events[2].id, "case-2")
    await consumer.fence(7)
    assert world.store.epoch == 7
