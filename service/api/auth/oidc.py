"""OIDC access tokens (JWT): the identity provider's signing keys and the token check.

Tokens are checked for their signature (RS256 or ES256 only: never ``none``, never an HMAC
algorithm, whatever the token's header says), ``iss``, ``aud``, ``exp``, ``nbf`` and ``iat``
with a bounded clock skew, and must name their subject (``sub``). Scopes come from ``scope``
(space separated) or ``scp`` (a list, or a space-separated string).

The signing keys (a JWKS from a URL or a file) are cached for ``cache_s``; a token whose
``kid`` is not in the cache triggers one fetch, and fetches happen at most once per
``min_refresh_s`` whatever the tokens say, so forged ``kid`` values cannot make the service
hammer the identity provider. Fetching runs in a worker thread; checking a token with a cached
key does no I/O.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import jwt
from jwt import PyJWK, PyJWKClient, PyJWKSet
from starlette.concurrency import run_in_threadpool

from service.api.auth.principal import AuthConfigError, Principal
from service.errors import AuthUnavailableError, UnauthenticatedError

log = logging.getLogger(__name__)

ALGORITHMS = ("RS256", "ES256")
"""The only signature algorithms accepted (asymmetric; the key decides which)."""
REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud", "sub"]
MAX_TOKEN_CHARS = 16_384
FETCH_TIMEOUT_S = 5.0
INVALID = "invalid_token"

# PyJWT's exceptions, most specific first, as the detail of the 401 (never the token itself).
REASONS: list[tuple[type[jwt.PyJWTError], str]] = [
    (jwt.ExpiredSignatureError, "the token has expired"),
    (jwt.ImmatureSignatureError, "the token is not valid yet (nbf or iat in the future)"),
    (jwt.InvalidAudienceError, "the token is not meant for this service (aud)"),
    (jwt.InvalidIssuerError, "the token is from another issuer (iss)"),
    (jwt.MissingRequiredClaimError, "the token lacks a required claim (exp, iat, iss, aud, sub)"),
    (jwt.InvalidSignatureError, "the token's signature is not valid"),
    (jwt.InvalidAlgorithmError, "the token's algorithm is not accepted (RS256, ES256)"),
]


def _is_loopback_url(url: str) -> bool:
    host = (urlparse(url).hostname or "").strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def url_source(url: str) -> Callable[[], PyJWKSet]:
    """Fetch the JWKS at ``url`` with PyJWT's client (no redirects; https, or http on
    loopback). AuthConfigError for another URL."""
    scheme = urlparse(url).scheme.lower()
    if scheme != "https" and not (scheme == "http" and _is_loopback_url(url)):
        raise AuthConfigError(
            "LUNGSEG_OIDC_JWKS_URL must be an https:// URL (http:// only on a loopback address)"
        )
    client = PyJWKClient(url, cache_jwk_set=False, timeout=FETCH_TIMEOUT_S)
    return client.get_jwk_set


def file_source(path: Path) -> Callable[[], PyJWKSet]:
    """Read the JWKS from ``path`` (again at each refresh: a rotated file is picked up)."""

    def read() -> PyJWKSet:
        return PyJWKSet.from_dict(json.loads(path.read_text(encoding="utf-8")))

    return read


def signing_keys(jwk_set: PyJWKSet) -> dict[str | None, PyJWK]:
    """The set's keys usable to verify tokens (RS256/ES256, ``use`` sig or absent), by kid."""
    return {
        key.key_id: key
        for key in jwk_set.keys
        if key.algorithm_name in ALGORITHMS and key.public_key_use in ("sig", None)
    }


class JwksCache:
    """The identity provider's signing keys by ``kid``, fetched lazily and rate-limited.

    ``fetches`` counts the fetch attempts; ``clock`` (monotonic seconds) may be replaced.
    """

    def __init__(
        self,
        fetch: Callable[[], PyJWKSet],
        cache_s: float,
        min_refresh_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self.cache_s = cache_s
        self.min_refresh_s = min_refresh_s
        self.clock = clock
        self.fetches = 0
        self._keys: dict[str | None, PyJWK] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._lock = threading.Lock()

    def _pick(self, keys: dict[str | None, PyJWK], kid: str | None) -> PyJWK | None:
        if kid is None and len(keys) == 1:  # a token without kid, a set of one key
            return next(iter(keys.values()))
        return keys.get(kid)

    def _may_fetch(self, now: float) -> bool:
        return self._attempted_at is None or now - self._attempted_at >= self.min_refresh_s

    def needs_fetch(self, kid: str | None) -> bool:
        """Whether :meth:`get` would fetch for ``kid`` now (stale cache or unknown kid, and
        the last fetch long enough ago). No I/O, no lock."""
        now = self.clock()
        fresh = self._fetched_at is not None and now - self._fetched_at < self.cache_s
        if fresh and self._pick(self._keys, kid) is not None:
            return False
        return self._may_fetch(now)

    def get(self, kid: str | None, may_fetch: bool = True) -> PyJWK | None:
        """The key for ``kid``, fetching the set first when :meth:`needs_fetch` says so and
        ``may_fetch`` (blocking: call it in a worker thread then). None when unknown.

        Raises:
            AuthUnavailableError: no set was ever fetched and fetching failed (or is not
                allowed yet).
        """
        if may_fetch and self.needs_fetch(kid):
            with self._lock:  # one fetch at a time; the others then find it done
                if self.needs_fetch(kid):
                    self._refresh()
        if self._fetched_at is None:
            raise AuthUnavailableError(
                "the identity provider's signing keys cannot be fetched; retry later",
                max(1, round(self.min_refresh_s)),
            )
        return self._pick(self._keys, kid)

    def _refresh(self) -> None:
        self._attempted_at = self.clock()
        self.fetches += 1
        try:
            keys = signing_keys(self._fetch())
        except (jwt.PyJWTError, OSError, ValueError) as err:
            log.warning("OIDC: fetching the signing keys (JWKS) failed: %s", type(err).__name__)
            return
        if not keys:
            log.warning("OIDC: the JWKS holds no RS256/ES256 signing key")
        self._keys = keys
        self._fetched_at = self._attempted_at


def _scopes(claims: dict[str, Any]) -> frozenset[str]:
    scopes: set[str] = set()
    scope = claims.get("scope")
    if isinstance(scope, str):
        scopes.update(scope.split())
    scp = claims.get("scp")
    if isinstance(scp, str):
        scopes.update(scp.split())
    elif isinstance(scp, list):
        scopes.update(s for s in scp if isinstance(s, str))
    return frozenset(scopes)


def _invalid(detail: str) -> UnauthenticatedError:
    return UnauthenticatedError(detail, INVALID)


class OidcVerifier:
    """Checks an OIDC access token (JWT) and returns its principal (``sub``, its scopes)."""

    def __init__(self, issuer: str, audience: str, keys: JwksCache, leeway_s: float) -> None:
        self.issuer = issuer
        self.audience = audience
        self.keys = keys
        self.leeway_s = leeway_s

    @classmethod
    def from_settings(
        cls,
        issuer: str | None,
        audience: str | None,
        jwks_url: str | None,
        jwks_file: Path | None,
        leeway_s: float,
        cache_s: float,
        min_refresh_s: float,
    ) -> OidcVerifier | None:
        """The verifier of these settings; None when none is set.

        Raises:
            AuthConfigError: some but not all of them, both a JWKS URL and a file, an
                unreadable JWKS file, a plain-http URL off loopback.
        """
        if not any((issuer, audience, jwks_url, jwks_file)):
            return None
        if not (issuer and audience and (jwks_url or jwks_file)):
            raise AuthConfigError(
                "OIDC needs LUNGSEG_OIDC_ISSUER, LUNGSEG_OIDC_AUDIENCE and one of "
                "LUNGSEG_OIDC_JWKS_URL or LUNGSEG_OIDC_JWKS_FILE"
            )
        if jwks_url and jwks_file:
            raise AuthConfigError("set LUNGSEG_OIDC_JWKS_URL or LUNGSEG_OIDC_JWKS_FILE, not both")
        if jwks_file is not None:
            fetch = file_source(jwks_file)
            try:
                found = signing_keys(fetch())
            except (jwt.PyJWTError, OSError, ValueError) as err:
                raise AuthConfigError(
                    f"LUNGSEG_OIDC_JWKS_FILE {jwks_file}: not a readable JWKS "
                    f"({type(err).__name__})"
                ) from None
            if not found:
                raise AuthConfigError(
                    f"LUNGSEG_OIDC_JWKS_FILE {jwks_file}: no RS256/ES256 signing key"
                )
        else:
            fetch = url_source(str(jwks_url))
        return cls(issuer, audience, JwksCache(fetch, cache_s, min_refresh_s), leeway_s)

    def _header(self, token: str) -> tuple[str, str | None]:
        if len(token) > MAX_TOKEN_CHARS:
            raise _invalid("the token is too long")
        # Only to choose the key: PyJWT parses the whole token again, strictly, to verify it.
        head = token.partition(".")[0]
        try:
            header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
        except (ValueError, binascii.Error):
            header = None
        if not isinstance(header, dict) or token.count(".") != 2:
            raise _invalid("the token is not a well-formed JWT")
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in ALGORITHMS:
            raise _invalid("the token's algorithm is not accepted (RS256, ES256)")
        if kid is not None and not isinstance(kid, str):
            raise _invalid("the token's kid is not a string")
        return alg, kid

    def check(self, token: str, key: PyJWK | None, alg: str) -> Principal:
        """The principal of ``token`` verified with ``key`` (no I/O)."""
        if key is None:
            raise _invalid("the token's signing key (kid) is not one of the identity provider's")
        if key.algorithm_name != alg:
            raise _invalid("the token's algorithm does not match its signing key")
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_s,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.PyJWTError as err:
            reason = next((r for cls, r in REASONS if isinstance(err, cls)), None)
            raise _invalid(reason or "the token is not valid") from None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise _invalid("the token's sub is empty")
        return Principal(subject, "oidc", _scopes(claims))

    async def verify(self, token: str) -> Principal:
        """Check ``token``; the signing keys are fetched in a worker thread when needed.

        Raises:
            UnauthenticatedError: the token is not valid (``error`` invalid_token).
            AuthUnavailableError: the signing keys have never been fetched and cannot be.
        """
        alg, kid = self._header(token)
        if self.keys.needs_fetch(kid):
            key = await run_in_threadpool(self.keys.get, kid)
        else:
            key = self.keys.get(kid, may_fetch=False)
        return self.check(token, key, alg)
