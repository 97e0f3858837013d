"""access-svc's Ed25519 signing key: grant tokens (access_grant.proto) and ledger checkpoints.

One key signs both, under different context strings ("lawtrail.access.v1.AccessGrant\n",
"lawtrail.access.v1.Checkpoint\n"), so a signature of one kind can never pass for the other. The key id
(first 8 bytes of SHA-256 of the raw public key, hex) goes with every signature, so keys can rotate:
verifiers trust the public keys they are given and pick one by id.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from lawtrail.access.v1 import access_grant_pb2 as pb

from access_svc.adapters.proto_mapping import grant_pb
from access_svc.domain.model import Grant
from access_svc.service_layer.ports import GrantSigner

TOKEN_PREFIX = "lg1."  # noqa: S105 - a format tag, not a secret
GRANT_CONTEXT = b"lawtrail.access.v1.AccessGrant\n"


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).digest()[:8].hex()


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise SystemExit(
            f"access-svc signing key {path} does not exist: set LAWTRAIL_ACCESS_SIGNING_KEY to a PEM Ed25519 "
            "private key (locally it is created under LAWTRAIL_DATA_DIR/keys)"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SystemExit(
            f"{path} is not an Ed25519 private key (grants and checkpoints are signed with Ed25519)"
        )
    return key


class Ed25519Signer(GrantSigner):
    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self.key_id = key_id(private_key.public_key())

    def public_pem(self) -> bytes:
        return self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign_grant(self, grant: Grant) -> tuple[str, str]:
        body = grant_pb(grant).SerializeToString(deterministic=True)
        signed = pb.SignedAccessGrant(
            grant=body, key_id=self.key_id, signature=self._key.sign(GRANT_CONTEXT + body)
        )
        token = TOKEN_PREFIX + base64.urlsafe_b64encode(signed.SerializeToString()).decode().rstrip("=")
        return token, self.key_id

    def sign(self, body: bytes) -> tuple[str, bytes]:
        return self.key_id, self._key.sign(body)
