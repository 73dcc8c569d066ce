"""``python -m service.api.auth bench``: the cost of one credential check, in microseconds.

An API key checked against a keys file of ``clients`` entries (SHA-256 + one constant-time
comparison per entry), the same through ``Authenticator.authenticate`` (what a request's
dependency awaits), and an OIDC access token (RS256 with a 2048-bit key, ES256 on P-256)
with its signing key cached: the signature, the claims and the scopes, no I/O.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt import PyJWKSet
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from service.api.auth.authenticator import Authenticator
from service.api.auth.keys import ApiKeys, new_key
from service.api.auth.oidc import JwksCache, OidcVerifier

ISSUER = "https://idp.invalid/realms/bench"
AUDIENCE = "lungseg"


def _per_call_us(call: Callable[[], object], n: int) -> float:
    call()
    start = time.perf_counter()
    for _ in range(n):
        call()
    return (time.perf_counter() - start) / n * 1e6


async def _awaited_us(auth: Authenticator, key: str, n: int) -> float:
    await auth.authenticate(key, None)
    start = time.perf_counter()
    for _ in range(n):
        await auth.authenticate(key, None)
    return (time.perf_counter() - start) / n * 1e6


def _verifier(alg: str) -> tuple[OidcVerifier, str]:
    private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    if alg == "RS256":
        private = rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = RSAAlgorithm.to_jwk(rsa_key.public_key(), as_dict=True)
    else:
        private = ec_key = ec.generate_private_key(ec.SECP256R1())
        jwk = ECAlgorithm.to_jwk(ec_key.public_key(), as_dict=True)
    keys = {"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": alg}]}
    cache = JwksCache(lambda: PyJWKSet.from_dict(keys), cache_s=3600, min_refresh_s=10)
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "bench", "iat": now, "exp": now + 3600}
    claims["scope"] = "segment"
    token = jwt.encode(claims, private, algorithm=alg, headers={"kid": "k1"})
    return OidcVerifier(ISSUER, AUDIENCE, cache, leeway_s=30), token


def measure(n: int = 10_000, clients: int = 10) -> dict[str, float]:
    """Microseconds per check (means over ``n`` checks after one warm-up)."""
    made = [new_key(f"client-{i}", "segment") for i in range(clients)]
    auth = Authenticator(True, ApiKeys.parse([line for _, line in made], "bench"))
    key = made[-1][0]
    results = {
        "api_key_check_us": _per_call_us(lambda: auth.check_key(key), n),
        "api_key_authenticate_us": asyncio.run(_awaited_us(auth, key, n)),
        "auth_off_authenticate_us": asyncio.run(_awaited_us(Authenticator(False), key, n)),
    }
    for alg in ("RS256", "ES256"):
        verifier, token = _verifier(alg)
        results[f"jwt_{alg.lower()}_check_us"] = asyncio.run(
            _awaited_jwt_us(verifier, token, max(1, n // 5))
        )
    return {name: round(value, 2) for name, value in results.items()}


async def _awaited_jwt_us(verifier: OidcVerifier, token: str, n: int) -> float:
    await verifier.verify(token)
    start = time.perf_counter()
    for _ in range(n):
        await verifier.verify(token)
    return (time.perf_counter() - start) / n * 1e6
