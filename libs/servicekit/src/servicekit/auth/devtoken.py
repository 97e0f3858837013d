"""Local development tokens: a dev signing key under the data folder and a command to mint tokens.

Production tokens come from the city's identity provider; services only verify. Locally, the services
trust ``<data_dir>/keys/dev-public.pem`` by default (see ``ServiceSettings.auth_public_keys``), and
``lawtrail-dev-token`` signs tokens with the matching private key, creating the pair on first use:

    uv run lawtrail-dev-token --subject alice --unit unit-a --roles OFFICER,UNIT_HEAD
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)

__all__ = ["ensure_dev_keys", "generate_keypair", "main", "mint_token"]

DEV_ISSUER = "lawtrail-dev"
DEV_AUDIENCE = "lawtrail"


def generate_keypair() -> tuple[bytes, bytes]:
    """A fresh Ed25519 key pair as (private PEM, public PEM); tests use it to sign their own tokens."""
    private = Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    public_pem = private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    return private_pem, public_pem


def ensure_keypair(data_dir: Path, name: str) -> tuple[Path, Path]:
    """Create ``<data_dir>/keys/<name>-{private,public}.pem`` once; return (private path, public path).

    The private key is written owner-only (0600) and never overwritten: replacing it would silently
    invalidate every token already handed out and the public key running services loaded at start.
    """
    keys = data_dir / "keys"
    private_path, public_path = keys / f"{name}-private.pem", keys / f"{name}-public.pem"
    if private_path.exists() and public_path.exists():
        return private_path, public_path
    keys.mkdir(parents=True, exist_ok=True)
    private_pem, public_pem = generate_keypair()
    # O_EXCL: if two processes race to create the key, one wins and the other fails loudly.
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(private_pem)
    public_path.write_bytes(public_pem)
    return private_path, public_path


def ensure_dev_keys(data_dir: Path) -> tuple[Path, Path]:
    """The local development key pair of bearer tokens: ``<data_dir>/keys/dev-{private,public}.pem``."""
    return ensure_keypair(data_dir, "dev")


def mint_token(
    private_key_pem: bytes,
    *,
    subject: str,
    unit: str,
    roles: Iterable[str],
    scopes: Iterable[str] = (),
    ttl_s: int = 3600,
    issuer: str = DEV_ISSUER,
    audience: str = DEV_AUDIENCE,
    now: datetime | None = None,
) -> str:
    """A JWT signed with EdDSA carrying the claims ``TokenVerifier`` expects."""
    key = load_pem_private_key(private_key_pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("the signing key must be an Ed25519 private key (PEM, PKCS#8)")
    issued = now or datetime.now(UTC)
    claims: dict[str, object] = {
        "sub": subject,
        "unit": unit,
        "roles": sorted(set(roles)),
        "iss": issuer,
        "aud": audience,
        "iat": int(issued.timestamp()),
        "exp": int((issued + timedelta(seconds=ttl_s)).timestamp()),
        "jti": str(uuid.uuid4()),
    }
    scope = " ".join(sorted(set(scopes)))
    if scope:
        claims["scope"] = scope
    return jwt.encode(claims, key, algorithm="EdDSA")


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    """CLI ``lawtrail-dev-token``: print a dev token (creating the dev key pair on first use)."""
    parser = argparse.ArgumentParser(
        prog="lawtrail-dev-token",
        description="Mint a bearer token for the local stack, signed with the dev key the services trust.",
    )
    parser.add_argument("--subject", required=True, help="user or service account id, e.g. alice")
    parser.add_argument("--unit", required=True, help="enforcement unit of the caller, e.g. unit-a")
    parser.add_argument("--roles", required=True, help="comma-separated, e.g. OFFICER,UNIT_HEAD")
    parser.add_argument("--scopes", default="", help="comma-separated scopes (service accounts)")
    parser.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds (default 3600)")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("LAWTRAIL_DATA_DIR", ".lawtrail/data")),
        help="local data folder holding keys/ (default: $LAWTRAIL_DATA_DIR or ./.lawtrail/data)",
    )
    parser.add_argument("--issuer", default=os.environ.get("LAWTRAIL_AUTH_ISSUER", DEV_ISSUER))
    parser.add_argument("--audience", default=os.environ.get("LAWTRAIL_AUTH_AUDIENCE", DEV_AUDIENCE))
    args = parser.parse_args(argv)
    if args.ttl <= 0:
        parser.error("--ttl must be a positive number of seconds")
    roles = _split(args.roles)
    if not roles:
        parser.error("--roles needs at least one role, e.g. OFFICER")
    private_path, public_path = ensure_dev_keys(args.data_dir)
    token = mint_token(
        private_path.read_bytes(),
        subject=args.subject,
        unit=args.unit,
        roles=roles,
        scopes=_split(args.scopes),
        ttl_s=args.ttl,
        issuer=args.issuer,
        audience=args.audience,
    )
    print(token)
    print(f"signed with {private_path}; services trust {public_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
