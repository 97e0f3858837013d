"""Who is calling: bearer JWTs signed with EdDSA (Ed25519), verified into a ``Principal``.

Tokens are minted elsewhere (the city's identity provider in production, ``lawtrail-dev-token``
locally); every service only *verifies* them against the public keys it is configured to trust, so a
service never holds a signing key. EdDSA only: accepting several algorithms is how "alg confusion"
forgeries happen, so anything else is refused with a message that says so.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from servicekit.config import ServiceSettings
from servicekit.errors import Unauthenticated
from servicekit.policy import Actor, Role

__all__ = ["Actor", "Principal", "Role", "TokenVerifier", "acting_as", "current_actor", "current_principal"]


@dataclass(frozen=True)
class Principal:
    """The verified caller: subject (user or service account), its unit, roles and scopes."""

    subject: str
    unit: str
    roles: frozenset[str]
    scopes: frozenset[str] = frozenset()


_current: ContextVar[Principal | None] = ContextVar("servicekit_principal", default=None)


def current_principal() -> Principal:
    """The caller of the RPC being handled (set by the auth interceptor)."""
    principal = _current.get()
    if principal is None:
        raise Unauthenticated("no authenticated caller in this context: the call did not pass authentication")
    return principal


def current_actor() -> Actor:
    """The caller of the RPC being handled as the domain's `Actor` (roles and scopes together)."""
    return Actor.of(current_principal())


@contextmanager
def acting_as(principal: Principal) -> Iterator[None]:
    """Make ``principal`` the current caller inside the block (the interceptor and tests use it)."""
    token = _current.set(principal)
    try:
        yield
    finally:
        _current.reset(token)


_ALGORITHM = "EdDSA"
_REQUIRED_CLAIMS = ["sub", "iss", "aud", "exp", "iat"]


def _utc(timestamp: Any) -> str:
    try:
        return datetime.fromtimestamp(float(timestamp), UTC).isoformat(timespec="seconds")
    except (TypeError, ValueError, OverflowError):
        return repr(timestamp)


class TokenVerifier:
    """Verifies bearer tokens against trusted Ed25519 public keys and expected issuer/audience."""

    def __init__(
        self,
        public_keys: Sequence[Ed25519PublicKey],
        *,
        issuer: str,
        audience: str,
        leeway_s: float = 30.0,
    ) -> None:
        if not public_keys:
            raise ValueError("a TokenVerifier needs at least one trusted public key")
        self._keys = list(public_keys)
        self._issuer = issuer
        self._audience = audience
        # Clock skew between the token minter and this service; small, since tokens are short-lived.
        self._leeway_s = leeway_s

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> TokenVerifier:
        """Load the PEM files of ``settings.auth_public_keys``; fail at start with a message that helps."""
        keys = [load_public_key(path) for path in settings.auth_public_keys]
        return cls(keys, issuer=settings.auth_issuer, audience=settings.auth_audience)

    def verify(self, token: str) -> Principal:
        """The principal of a valid ``token``; raises ``Unauthenticated`` saying what is wrong."""
        header = self._header(token)
        algorithm = header.get("alg")
        if algorithm != _ALGORITHM:
            raise Unauthenticated(
                f"token algorithm {algorithm!r} is not accepted: tokens must be signed with EdDSA (Ed25519)"
            )
        claims = self._verified_claims(token)
        return self._principal(claims)

    @staticmethod
    def _header(token: str) -> dict[str, Any]:
        if token.count(".") != 2:
            raise Unauthenticated(
                "malformed bearer token: expected a JWT of three base64url parts 'header.payload.signature'"
            )
        try:
            return jwt.get_unverified_header(token)
        except jwt.DecodeError as error:
            raise Unauthenticated(f"malformed bearer token: {error}") from None

    def _verified_claims(self, token: str) -> dict[str, Any]:
        for key in self._keys:
            try:
                return jwt.decode(
                    token,
                    key,
                    algorithms=[_ALGORITHM],
                    issuer=self._issuer,
                    audience=self._audience,
                    leeway=self._leeway_s,
                    options={"require": _REQUIRED_CLAIMS},
                )
            except jwt.InvalidSignatureError:
                continue  # maybe signed by another trusted key (key rotation); try the next one
            except jwt.ExpiredSignatureError:
                expired_at = _utc(_unverified_claims(token).get("exp"))
                now = datetime.now(UTC).isoformat(timespec="seconds")
                raise Unauthenticated(
                    f"token expired at {expired_at} (server time {now}): obtain a new token"
                ) from None
            except jwt.ImmatureSignatureError:
                valid_from = _utc(_unverified_claims(token).get("nbf"))
                raise Unauthenticated(
                    f"token is not valid before {valid_from}: check the clock of the machine that minted it"
                ) from None
            except jwt.InvalidIssuerError:
                issuer = _unverified_claims(token).get("iss")
                raise Unauthenticated(
                    f"token issuer {issuer!r} is not trusted: this service expects {self._issuer!r}"
                ) from None
            except jwt.InvalidAudienceError:
                audience = _unverified_claims(token).get("aud")
                raise Unauthenticated(
                    f"token audience {audience!r} does not include {self._audience!r}: "
                    "request a token for this audience"
                ) from None
            except jwt.MissingRequiredClaimError as error:
                raise Unauthenticated(
                    f"token lacks the required {error.claim!r} claim: mint it with sub, iss, aud, exp and iat"
                ) from None
            except jwt.InvalidTokenError as error:
                raise Unauthenticated(f"invalid bearer token: {error}") from None
        raise Unauthenticated(
            "token signature does not verify against any trusted key: it was altered or minted by a "
            "signer this service does not trust (see LAWTRAIL_AUTH_PUBLIC_KEYS)"
        )

    @staticmethod
    def _principal(claims: dict[str, Any]) -> Principal:
        subject, unit, roles = claims.get("sub"), claims.get("unit"), claims.get("roles")
        if not isinstance(subject, str) or not subject:
            raise Unauthenticated("token 'sub' claim must be a non-empty string (the caller's id)")
        if not isinstance(unit, str) or not unit:
            raise Unauthenticated("token lacks the 'unit' claim: every caller belongs to an enforcement unit")
        if not isinstance(roles, list) or not all(isinstance(role, str) for role in roles):
            raise Unauthenticated("token 'roles' claim must be a list of role names, e.g. [\"OFFICER\"]")
        scope = claims.get("scope", "")
        if not isinstance(scope, str):
            raise Unauthenticated("token 'scope' claim must be a space-separated string")
        return Principal(subject=subject, unit=unit, roles=frozenset(roles), scopes=frozenset(scope.split()))


def _unverified_claims(token: str) -> dict[str, Any]:
    """Claims read only to word an error message, after the signature was already verified."""
    return jwt.decode(token, options={"verify_signature": False})


def load_public_key(path: Path) -> Ed25519PublicKey:
    """Read a trusted signer's Ed25519 public key from a PEM file."""
    try:
        key = load_pem_public_key(path.read_bytes())
    except FileNotFoundError:
        raise FileNotFoundError(
            f"trusted token key {path} does not exist: run `uv run lawtrail-dev-token --help` to create "
            "the local dev key, or point LAWTRAIL_AUTH_PUBLIC_KEYS at the signer's public key"
        ) from None
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"trusted token key {path} is not an Ed25519 public key")
    return key
