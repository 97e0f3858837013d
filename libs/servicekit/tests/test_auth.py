"""Bearer tokens: valid, expired, forged, wrong issuer/audience, malformed — each with a message to act on."""

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from servicekit.auth import Principal, Role, TokenVerifier, acting_as, current_principal, load_public_key
from servicekit.auth.devtoken import ensure_dev_keys, generate_keypair, main, mint_token
from servicekit.config import ServiceSettings
from servicekit.errors import Unauthenticated

PRIVATE, PUBLIC = generate_keypair()
OTHER_PRIVATE, OTHER_PUBLIC = generate_keypair()


def verifier(*public_pems: bytes) -> TokenVerifier:
    keys = [load_pem_public_key(pem) for pem in public_pems or (PUBLIC,)]
    return TokenVerifier(keys, issuer="lawtrail-dev", audience="lawtrail")  # type: ignore[arg-type]


def token(**overrides: object) -> str:
    params: dict[str, object] = {"subject": "alice", "unit": "unit-a", "roles": [Role.OFFICER]}
    params.update(overrides)
    key = params.pop("key", PRIVATE)
    return mint_token(key, **params)  # type: ignore[arg-type]


def test_valid_token_gives_the_principal() -> None:
    principal = verifier().verify(token(roles=["OFFICER", "UNIT_HEAD"], scopes=["cases:read"]))
    assert principal == Principal(
        "alice", "unit-a", frozenset({"OFFICER", "UNIT_HEAD"}), frozenset({"cases:read"})
    )


def test_expired_token_says_when_it_expired() -> None:
    minted = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    with pytest.raises(
        Unauthenticated, match=r"token expired at 2026-01-01T13:00:00\+00:00 .*obtain a new token"
    ):
        verifier().verify(token(now=minted, ttl_s=3600))


def test_token_within_clock_skew_leeway_is_accepted() -> None:
    verifier().verify(token(now=datetime.now(UTC) - timedelta(seconds=3610), ttl_s=3600))


def test_forged_signature_is_refused() -> None:
    with pytest.raises(Unauthenticated, match="signature does not verify against any trusted key"):
        verifier().verify(token(key=OTHER_PRIVATE))


def test_tampered_payload_is_refused() -> None:
    header, payload, signature = token().split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["roles"] = ["LEGAL_OFFICE"]
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(Unauthenticated, match="signature does not verify"):
        verifier().verify(f"{header}.{forged}.{signature}")


def test_any_trusted_key_verifies_for_key_rotation() -> None:
    assert verifier(PUBLIC, OTHER_PUBLIC).verify(token(key=OTHER_PRIVATE)).subject == "alice"


def test_wrong_issuer_names_the_expected_one() -> None:
    with pytest.raises(
        Unauthenticated, match="issuer 'elsewhere' is not trusted: this service expects 'lawtrail-dev'"
    ):
        verifier().verify(token(issuer="elsewhere"))


def test_wrong_audience_is_refused() -> None:
    with pytest.raises(Unauthenticated, match="audience 'billing' does not include 'lawtrail'"):
        verifier().verify(token(audience="billing"))


@pytest.mark.parametrize("garbage", ["", "not-a-jwt", "a.b", "a.b.c.d", "!!!.???.###"])
def test_malformed_token_explains_the_expected_shape(garbage: str) -> None:
    with pytest.raises(Unauthenticated, match="malformed bearer token"):
        verifier().verify(garbage)


def test_other_algorithms_are_refused_to_prevent_alg_confusion() -> None:
    hs256 = jwt.encode({"sub": "alice"}, "a-shared-secret-of-32-bytes-len!", algorithm="HS256")
    with pytest.raises(Unauthenticated, match=r"algorithm 'HS256' is not accepted: .*EdDSA"):
        verifier().verify(hs256)


def test_missing_unit_claim_is_refused() -> None:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    now = int(datetime.now(UTC).timestamp())
    claims = {
        "sub": "alice",
        "roles": [],
        "iss": "lawtrail-dev",
        "aud": "lawtrail",
        "iat": now,
        "exp": now + 60,
    }
    unsigned_unit = jwt.encode(claims, load_pem_private_key(PRIVATE, None), algorithm="EdDSA")  # type: ignore[arg-type]
    with pytest.raises(Unauthenticated, match="lacks the 'unit' claim"):
        verifier().verify(unsigned_unit)


def test_missing_exp_claim_is_refused() -> None:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    claims = {"sub": "alice", "unit": "u", "roles": [], "iss": "lawtrail-dev", "aud": "lawtrail", "iat": 1}
    forever = jwt.encode(claims, load_pem_private_key(PRIVATE, None), algorithm="EdDSA")  # type: ignore[arg-type]
    with pytest.raises(Unauthenticated, match="lacks the required 'exp' claim"):
        verifier().verify(forever)


def test_current_principal_is_bound_per_context() -> None:
    with pytest.raises(Unauthenticated):
        current_principal()
    alice = Principal("alice", "unit-a", frozenset({"OFFICER"}))
    with acting_as(alice):
        assert current_principal() is alice
    with pytest.raises(Unauthenticated):
        current_principal()


def test_dev_keys_are_created_once_private_key_owner_only(tmp_path: Path) -> None:
    private, public = ensure_dev_keys(tmp_path)
    assert private.stat().st_mode & 0o777 == 0o600
    first = private.read_bytes()
    assert ensure_dev_keys(tmp_path) == (private, public)
    assert private.read_bytes() == first
    load_public_key(public)


def test_cli_mints_a_token_the_default_settings_trust(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAWTRAIL_DATA_DIR", str(tmp_path))
    assert main(["--subject", "bob", "--unit", "unit-b", "--roles", "UNIT_HEAD,OFFICER", "--ttl", "60"]) == 0
    minted = capsys.readouterr().out.strip()
    principal = TokenVerifier.from_settings(ServiceSettings()).verify(minted)
    assert principal == Principal("bob", "unit-b", frozenset({"UNIT_HEAD", "OFFICER"}))


def test_missing_trusted_key_file_says_how_to_create_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="lawtrail-dev-token"):
        TokenVerifier.from_settings(ServiceSettings(data_dir=tmp_path))
