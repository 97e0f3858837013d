"""The signed access-grant token (lawtrail/access/v1/access_grant.proto) and the R23-2 guarantee that no
RPC of media-svc deletes or replaces content or the hash of an original, read from the descriptors."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from lawtrail.access.v1 import access_grant_pb2 as gpb
from lawtrail.media.v1 import device_service_pb2, recording_service_pb2
from media_svc.adapters.access_grants import Ed25519GrantVerifier, grant_message, key_id, mint_grant
from media_svc.domain.access import GrantedAction, GrantResource, ResourceKind
from media_svc.entrypoints.grpc_api import role_policy
from servicekit.errors import InvalidArgument, PermissionDenied

ISSUER = Ed25519PrivateKey.generate()
LATER = datetime.now(UTC) + timedelta(hours=1)


def test_r16_a_minted_grant_verifies_and_decodes() -> None:
    token = mint_grant(
        ISSUER,
        grant_message(grant_id="g-9", grantee="alice", recordings=["r1"], cases=["c1"], expires_at=LATER),
    )
    assert token.startswith("lg1.")
    grant = Ed25519GrantVerifier([ISSUER.public_key()]).decode(token)
    assert grant.grant_id == "g-9"
    assert grant.grantee_subject == "alice"
    assert grant.resources == (
        GrantResource(ResourceKind.RECORDING, "r1"),
        GrantResource(ResourceKind.CASE, "c1"),
    )
    assert grant.actions == frozenset({GrantedAction.DOWNLOAD})
    assert grant.expires_at == LATER.replace(microsecond=LATER.microsecond)


def test_r16_a_grant_signed_by_an_untrusted_key_is_refused() -> None:
    token = mint_grant(
        Ed25519PrivateKey.generate(), grant_message(grant_id="g", grantee="a", expires_at=LATER)
    )
    with pytest.raises(PermissionDenied, match="does not trust"):
        Ed25519GrantVerifier([ISSUER.public_key()]).decode(token)


def test_r16_a_tampered_grant_is_refused() -> None:
    token = mint_grant(
        ISSUER, grant_message(grant_id="g", grantee="alice", recordings=["r1"], expires_at=LATER)
    )
    raw = base64.urlsafe_b64decode(token[4:] + "=" * (-len(token[4:]) % 4))
    signed = gpb.SignedAccessGrant.FromString(raw)
    body = gpb.AccessGrant.FromString(signed.grant)
    body.grantee_subject = "mallory"
    signed.grant = body.SerializeToString()
    forged = "lg1." + base64.urlsafe_b64encode(signed.SerializeToString()).decode().rstrip("=")
    with pytest.raises(PermissionDenied, match="invalid signature"):
        Ed25519GrantVerifier([ISSUER.public_key()]).decode(forged)


@pytest.mark.parametrize("token", ["", "Bearer xyz", "lg1.!!!", "lg1." + "A" * 20_000])
def test_r16_a_malformed_grant_is_invalid_argument(token: str) -> None:
    with pytest.raises(InvalidArgument):
        Ed25519GrantVerifier([ISSUER.public_key()]).decode(token)


def test_key_id_is_the_first_8_bytes_of_the_sha256_of_the_raw_key() -> None:
    assert re.fullmatch(r"[0-9a-f]{16}", key_id(ISSUER.public_key()))


# ---------------------------------------------------------------------------------------------
# R23-2: no deletion, no overwrite — read from the service descriptors
# ---------------------------------------------------------------------------------------------

SERVICES = [
    recording_service_pb2.DESCRIPTOR.services_by_name["RecordingService"],
    device_service_pb2.DESCRIPTOR.services_by_name["DeviceService"],
]
DESTRUCTIVE = re.compile(
    r"^(Delete|Remove|Purge|Erase|Destroy|Replace|Overwrite|Update|Set|Edit|Modify|Patch|Truncate)"
)


def all_methods() -> list[tuple[str, str]]:
    return [(s.full_name, m.name) for s in SERVICES for m in s.methods]


def test_r23_no_rpc_of_media_svc_is_named_for_deleting_or_replacing_anything() -> None:
    assert len(all_methods()) >= 10
    offenders = [f"{s}/{m}" for s, m in all_methods() if DESTRUCTIVE.match(m)]
    assert offenders == []


def test_r23_only_the_upload_carries_content_and_no_request_can_name_a_hash_to_set() -> None:
    """Walks every request message of every RPC: content bytes appear only in the upload stream (stored
    write-once under the hash the server computes), and a SHA-256 appears only as the upload's declared
    address, which the server verifies instead of trusting."""
    allowed_bytes = {"lawtrail.media.v1.UploadRecordingRequest.chunk"}
    allowed_sha = {"lawtrail.media.v1.UploadManifest.sha256"}
    found_bytes: set[str] = set()
    found_sha: set[str] = set()

    def walk(message: object, seen: set[str]) -> None:
        full = message.full_name  # type: ignore[attr-defined]
        if full in seen or full.startswith("google.protobuf."):
            return
        seen.add(full)
        for field in message.fields:  # type: ignore[attr-defined]
            if field.type == field.TYPE_BYTES:
                found_bytes.add(field.full_name)
            if "sha256" in field.name or "hash" in field.name:
                found_sha.add(field.full_name)
            if field.message_type is not None:
                walk(field.message_type, seen)

    for service in SERVICES:
        for method in service.methods:
            walk(method.input_type, set())
    assert found_bytes == allowed_bytes
    assert found_sha == allowed_sha


def test_every_recording_rpc_has_a_role_policy() -> None:
    names = {f"/{s}/{m}" for s, m in all_methods() if s.endswith("RecordingService")}
    assert names == {m for m in role_policy() if m.startswith("/lawtrail.media.v1.RecordingService/")}
