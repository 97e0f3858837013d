"""R16: case-svc accepts only grant tokens signed by a trusted access-svc key (chosen by key id); a grant
signed by a foreign key, with a broken signature or malformed is refused before any rule is applied."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from case_svc.adapters.access_grants import SIGNING_CONTEXT, Ed25519GrantVerifier, key_id
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from lawtrail.access.v1 import access_grant_pb2 as pb
from servicekit.errors import InvalidArgument, PermissionDenied

NOW = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)


def token(key: Ed25519PrivateKey, *, tamper: bool = False) -> str:
    grant = pb.AccessGrant(
        grant_id="gr-1",
        grantee_subject="reviewer-9",
        resources=[pb.GrantResource(kind=pb.GRANT_RESOURCE_KIND_CASE, id="case-1")],
        actions=[pb.GRANTED_ACTION_VIEW],
        purpose="review",
        approver_subject="head-1",
    )
    grant.issued_at.FromDatetime(NOW)
    grant.expires_at.FromDatetime(NOW + timedelta(minutes=10))
    body = grant.SerializeToString(deterministic=True)
    signature = key.sign(SIGNING_CONTEXT + body)
    if tamper:
        body = body.replace(b"reviewer-9", b"reviewer-8")
    signed = pb.SignedAccessGrant(grant=body, key_id=key_id(key.public_key()), signature=signature)
    return "lg1." + base64.urlsafe_b64encode(signed.SerializeToString()).decode().rstrip("=")


def test_r16_a_grant_signed_by_the_trusted_key_decodes() -> None:
    key = Ed25519PrivateKey.generate()
    claims = Ed25519GrantVerifier([key.public_key()], None).decode(token(key))
    assert (claims.grant_id, claims.grantee_subject, claims.cases, claims.actions) == (
        "gr-1",
        "reviewer-9",
        frozenset({"case-1"}),
        frozenset({"VIEW"}),
    )


def test_r16_a_foreign_key_a_broken_signature_or_garbage_is_refused() -> None:
    trusted, foreign = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    verifier = Ed25519GrantVerifier([trusted.public_key()], None)
    with pytest.raises(PermissionDenied, match="does not trust"):
        verifier.decode(token(foreign))
    with pytest.raises(PermissionDenied, match="invalid signature"):
        verifier.decode(token(trusted, tamper=True))
    with pytest.raises(InvalidArgument, match="not a Lawtrail access grant"):
        verifier.decode("Bearer xyz")
    with pytest.raises(InvalidArgument, match="malformed"):
        verifier.decode("lg1.!!!")
