"""OIDC access tokens: key pairs made here, their JWKS served on loopback by a tiny HTTP
server in a thread; every way a token can be wrong is refused with 401 invalid_token."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import Depends, Request
from fastapi.testclient import TestClient
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from service.api.auth import AuthConfigError, OidcVerifier
from service.api.auth.oidc import JwksCache
from service.api.deps import require
from service.api.errors import PROBLEM_JSON

ISSUER = "https://idp.example.test/realms/hospital"
AUDIENCE = "lungseg"
SETS = "/v1/benchmark/sets"  # scope benchmark


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _jwk(private, kid: str) -> dict:
    algorithm = RSAAlgorithm if isinstance(private, rsa.RSAPrivateKey) else ECAlgorithm
    jwk = algorithm.to_jwk(private.public_key(), as_dict=True)
    alg = "RS256" if algorithm is RSAAlgorithm else "ES256"
    return {**jwk, "kid": kid, "use": "sig", "alg": alg}


class Jwks:
    """A JWKS endpoint on 127.0.0.1 (a free port), counting the fetches."""

    def __init__(self, keys: list[dict]) -> None:
        self.keys = keys
        self.fetches = 0
        jwks = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                jwks.fetches += 1
                body = json.dumps({"keys": jwks.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/certs"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def jwks(rsa_key, ec_key) -> Iterator[Jwks]:
    server = Jwks([_jwk(rsa_key, "rsa-1"), _jwk(ec_key, "ec-1")])
    yield server
    server.stop()


def claims(**overrides: object) -> dict:
    now = int(time.time())
    values: dict[str, object] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice@hospital",
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "scope": "openid benchmark",
    }
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not None}


def sign(key, kid: str = "rsa-1", alg: str = "RS256", **overrides: object) -> str:
    return jwt.encode(claims(**overrides), key, algorithm=alg, headers={"kid": kid})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(header: dict, payload: dict, signature: bytes = b"") -> str:
    head = b64(json.dumps(header).encode()) + "." + b64(json.dumps(payload).encode())
    return head + "." + b64(signature)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def app(make_app, jwks):
    app = make_app(oidc_issuer=ISSUER, oidc_audience=AUDIENCE, oidc_jwks_url=jwks.url)

    @app.get("/_whoami", dependencies=[Depends(require("benchmark"))])
    def whoami(request: Request) -> dict:
        who = request.state.principal
        return {"name": who.name, "method": who.method, "scopes": sorted(who.scopes)}

    return app


@pytest.fixture
def client(app) -> TestClient:
    return TestClient(app)


@pytest.fixture
def clock(app) -> FakeClock:
    fake = FakeClock()
    app.state.authenticator.oidc.keys.clock = fake
    return fake


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def refused(response) -> str:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    return response.json()["detail"]


def test_a_valid_rs256_token_names_its_subject_and_scopes(client, rsa_key, jwks):
    response = client.get("/_whoami", headers=bearer(sign(rsa_key)))
    assert response.json() == {
        "name": "alice@hospital",
        "method": "oidc",
        "scopes": ["benchmark", "openid"],
    }
    assert client.get(SETS, headers=bearer(sign(rsa_key))).status_code == 200
    assert jwks.fetches == 1  # cached


def test_a_valid_es256_token_with_scp_list(client, ec_key):
    token = sign(ec_key, kid="ec-1", alg="ES256", scope=None, scp=["benchmark", "segment"])
    assert client.get("/_whoami", headers=bearer(token)).json()["scopes"] == [
        "benchmark",
        "segment",
    ]


def test_a_token_without_the_scope_is_403(client, rsa_key):
    response = client.get(SETS, headers=bearer(sign(rsa_key, scope="openid segment")))
    assert response.status_code == 403
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]
    admin = sign(rsa_key, scope=None, scp="admin")  # scp as a string, as some IdPs send it
    assert client.get(SETS, headers=bearer(admin)).status_code == 200


def test_expired_and_bounded_clock_skew(client, rsa_key):
    now = int(time.time())
    assert "expired" in refused(client.get(SETS, headers=bearer(sign(rsa_key, exp=now - 60))))
    within = sign(rsa_key, exp=now - 10, iat=now - 400, nbf=now - 400)  # leeway 30 s
    assert client.get(SETS, headers=bearer(within)).status_code == 200


def test_not_yet_valid(client, rsa_key):
    now = int(time.time())
    for claim in ("nbf", "iat"):
        early = sign(rsa_key, **{claim: now + 120})
        assert "not valid yet" in refused(client.get(SETS, headers=bearer(early)))
    assert client.get(SETS, headers=bearer(sign(rsa_key, nbf=now + 10))).status_code == 200


def test_wrong_audience_or_issuer(client, rsa_key):
    assert "aud" in refused(client.get(SETS, headers=bearer(sign(rsa_key, aud="other-api"))))
    assert "iss" in refused(
        client.get(SETS, headers=bearer(sign(rsa_key, iss="https://evil.example")))
    )
    both = sign(rsa_key, aud=["other-api", AUDIENCE])
    assert client.get(SETS, headers=bearer(both)).status_code == 200


@pytest.mark.parametrize("missing", ["exp", "iat", "iss", "aud", "sub"])
def test_a_required_claim_missing(client, rsa_key, missing):
    refused(client.get(SETS, headers=bearer(sign(rsa_key, **{missing: None}))))


def test_alg_none_is_refused(client):
    for alg in ("none", "None", "NONE"):
        token = unsigned({"alg": alg, "typ": "JWT", "kid": "rsa-1"}, claims())
        assert "algorithm" in refused(client.get(SETS, headers=bearer(token)))


def test_hs256_signed_with_the_public_key_is_refused(client, rsa_key, jwks):
    """The key-confusion attack: HMAC with the public key's PEM (or its JWK) as the secret."""
    pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for alg, digest in (("HS256", hashlib.sha256), ("HS512", hashlib.sha512)):
        header = {"alg": alg, "typ": "JWT", "kid": "rsa-1"}
        head = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims()).encode())
        for secret in (pem, json.dumps(jwks.keys[0]).encode()):
            token = head + "." + b64(hmac.new(secret, head.encode(), digest).digest())
            assert "algorithm" in refused(client.get(SETS, headers=bearer(token)))


def test_algorithm_of_another_key_type_is_refused(client, rsa_key):
    token = unsigned({"alg": "ES256", "kid": "rsa-1"}, claims(), b"x" * 64)
    assert "does not match" in refused(client.get(SETS, headers=bearer(token)))


def test_a_tampered_payload_is_refused(client, rsa_key):
    head, _payload, signature = sign(rsa_key, scope="segment").split(".")
    forged = b64(json.dumps(claims(scope="admin")).encode())
    assert "signature" in refused(client.get(SETS, headers=bearer(f"{head}.{forged}.{signature}")))


def test_signed_by_another_key_under_a_known_kid(client, other_rsa_key):
    assert "signature" in refused(client.get(SETS, headers=bearer(sign(other_rsa_key))))


def test_garbage_tokens(client):
    for token in ("a.b.c", "eyJ.eyJ.x", "x" * 20_000 + ".a.b"):
        refused(client.get(SETS, headers=bearer(token)))


def test_an_unknown_kid_triggers_one_refresh_then_401(client, clock, rsa_key, other_rsa_key, jwks):
    assert client.get(SETS, headers=bearer(sign(rsa_key))).status_code == 200
    assert jwks.fetches == 1
    clock.now += 11  # past LUNGSEG_OIDC_JWKS_MIN_REFRESH_S (10 s)
    detail = refused(client.get(SETS, headers=bearer(sign(other_rsa_key, kid="rotated"))))
    assert "kid" in detail
    assert jwks.fetches == 2
    for i in range(20):  # forged kids cannot make the service hammer the IdP
        refused(client.get(SETS, headers=bearer(sign(other_rsa_key, kid=f"forged-{i}"))))
    assert jwks.fetches == 2
    assert client.get(SETS, headers=bearer(sign(rsa_key))).status_code == 200
    # The IdP rotates: the new kid is found by the next refresh allowed.
    jwks.keys.append(_jwk(other_rsa_key, "rotated"))
    refused(client.get(SETS, headers=bearer(sign(other_rsa_key, kid="rotated"))))
    clock.now += 11
    assert client.get(SETS, headers=bearer(sign(other_rsa_key, kid="rotated"))).status_code == 200
    assert jwks.fetches == 3


def test_the_cache_expires(client, clock, rsa_key, jwks):
    assert client.get(SETS, headers=bearer(sign(rsa_key))).status_code == 200
    clock.now += 301  # LUNGSEG_OIDC_JWKS_CACHE_S
    assert client.get(SETS, headers=bearer(sign(rsa_key))).status_code == 200
    assert jwks.fetches == 2


def test_idp_unreachable(make_app, rsa_key, jwks):
    url = jwks.url
    jwks.stop()
    app = make_app(oidc_issuer=ISSUER, oidc_audience=AUDIENCE, oidc_jwks_url=url)
    response = TestClient(app).get(SETS, headers=bearer(sign(rsa_key)))
    assert response.status_code == 503
    assert response.headers["retry-after"] == "10"


def test_jwks_file_and_api_keys_together(make_app, tmp_path, rsa_key, keys_file):
    path = tmp_path / "jwks.json"
    oct_key = {"kty": "oct", "k": b64(b"secret" * 8), "kid": "hmac", "alg": "HS256"}
    path.write_text(json.dumps({"keys": [oct_key, _jwk(rsa_key, "rsa-1")]}))
    app = make_app(
        oidc_issuer=ISSUER,
        oidc_audience=AUDIENCE,
        oidc_jwks_file=path,
        api_keys_file=keys_file.path,
    )
    client = TestClient(app)
    assert client.get(SETS, headers=bearer(sign(rsa_key))).status_code == 200
    assert client.get(SETS, headers=keys_file.bearer("research")).status_code == 200
    hs = jwt.encode(claims(), b"secret" * 8, algorithm="HS256", headers={"kid": "hmac"})
    refused(client.get(SETS, headers=bearer(hs)))  # an HMAC key in the set is never used


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"oidc_issuer": ISSUER}, "needs"),
        ({"oidc_issuer": ISSUER, "oidc_audience": AUDIENCE}, "needs"),
        (
            {
                "oidc_issuer": ISSUER,
                "oidc_audience": AUDIENCE,
                "oidc_jwks_url": "http://idp.example.test/certs",
            },
            "https",
        ),
        (
            {
                "oidc_issuer": ISSUER,
                "oidc_audience": AUDIENCE,
                "oidc_jwks_url": "https://idp.example.test/certs",
                "oidc_jwks_file": Path("/nonexistent"),
            },
            "not both",
        ),
        (
            {
                "oidc_issuer": ISSUER,
                "oidc_audience": AUDIENCE,
                "oidc_jwks_file": Path("/nonexistent"),
            },
            "not a readable JWKS",
        ),
    ],
)
def test_incomplete_oidc_settings_refuse_to_start(make_app, settings, message):
    with pytest.raises(AuthConfigError, match=message):
        make_app(**settings)


def test_jwks_cache_rate_limit_unit():
    fetched: list[float] = []
    clock = FakeClock()

    def fetch():
        fetched.append(clock.now)
        raise OSError("down")

    cache = JwksCache(fetch, cache_s=300, min_refresh_s=10, clock=clock)
    for _ in range(5):
        with pytest.raises(Exception, match="cannot be fetched"):
            cache.get("k")
    assert len(fetched) == 1
    clock.now += 10
    assert cache.needs_fetch("k")
    with pytest.raises(Exception, match="cannot be fetched"):
        cache.get("k")
    assert len(fetched) == 2
    assert isinstance(OidcVerifier, type)
