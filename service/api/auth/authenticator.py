"""The authentication of a worker, built once from the settings: who a request's credential
names (an API key or an OIDC token) and whether it may use an operation's scope."""

from __future__ import annotations

import ipaddress
import logging

from service.api.auth.keys import ApiKeys
from service.api.auth.oidc import OidcVerifier
from service.api.auth.principal import ANONYMOUS, METRICS, AuthConfigError, Principal
from service.api.settings import Settings
from service.errors import ForbiddenError, InvalidInputError, UnauthenticatedError

log = logging.getLogger(__name__)

REFUSAL = (
    "LUNGSEG_HOST={host} is not a loopback address and no authentication is configured: set "
    "LUNGSEG_API_KEYS_FILE (make a key with `python -m service.api.auth new-key <client> "
    "<scopes>`) or LUNGSEG_OIDC_ISSUER, LUNGSEG_OIDC_AUDIENCE and LUNGSEG_OIDC_JWKS_URL; or, "
    "behind a proxy that authenticates every request, opt out with LUNGSEG_AUTH=none"
)
NO_CREDENTIAL = (
    "authentication required: send `Authorization: Bearer <API key or access token>` "
    "or `X-API-Key: <API key>`"
)


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or ``localhost``."""
    host = host.strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def looks_like_jwt(token: str) -> bool:
    """Three dot-separated parts; API keys (``lungseg_`` + URL-safe base64) have no dot."""
    return token.count(".") == 2


class Authenticator:
    """Turns a request's credential into its :class:`Principal` and checks scopes.

    ``enabled`` False: every request is ``ANONYMOUS`` (all scopes). ``keys`` and ``oidc``: the
    configured methods (either may be None). ``metrics_auth``: GET /metrics needs a scope.
    """

    def __init__(
        self,
        enabled: bool,
        keys: ApiKeys | None = None,
        oidc: OidcVerifier | None = None,
        metrics_auth: bool = False,
    ) -> None:
        self.enabled = enabled
        self.keys = keys
        self.oidc = oidc
        self.metrics_auth = metrics_auth

    @classmethod
    def from_settings(cls, settings: Settings) -> Authenticator:
        """The authentication the settings describe (see the README's Security section).

        Raises:
            AuthConfigError: a malformed keys file or OIDC settings; LUNGSEG_AUTH=required
                without either; no authentication while bound to a non-loopback address
                (unless LUNGSEG_AUTH=none); LUNGSEG_METRICS_AUTH without authentication.
        """
        if settings.auth == "none":
            if settings.api_keys_file or settings.oidc_issuer or settings.oidc_jwks_url:
                log.warning("LUNGSEG_AUTH=none: the API keys and OIDC settings are ignored")
            if not is_loopback(settings.host):
                log.warning(
                    "authentication is off (LUNGSEG_AUTH=none) on %s: every client on the "
                    "network may call every operation",
                    settings.host,
                )
            if settings.metrics_auth:
                raise AuthConfigError("LUNGSEG_METRICS_AUTH=1 needs authentication on")
            return cls(enabled=False)
        keys = ApiKeys.load(settings.api_keys_file) if settings.api_keys_file else None
        oidc = OidcVerifier.from_settings(
            settings.oidc_issuer,
            settings.oidc_audience,
            settings.oidc_jwks_url,
            settings.oidc_jwks_file,
            settings.oidc_leeway_s,
            settings.oidc_jwks_cache_s,
            settings.oidc_jwks_min_refresh_s,
        )
        configured = keys is not None or oidc is not None
        if not configured:
            if settings.auth == "required":
                raise AuthConfigError(
                    "LUNGSEG_AUTH=required but neither LUNGSEG_API_KEYS_FILE nor the "
                    "LUNGSEG_OIDC_* settings are set"
                )
            if not is_loopback(settings.host):
                raise AuthConfigError(REFUSAL.format(host=settings.host))
            if settings.metrics_auth:
                raise AuthConfigError("LUNGSEG_METRICS_AUTH=1 needs authentication configured")
            return cls(enabled=False)
        methods = [f"API keys ({len(keys)} clients)"] if keys is not None else []
        if oidc is not None:
            methods.append(f"OIDC (issuer {oidc.issuer})")
        log.info("authentication on: %s", " and ".join(methods))
        return cls(True, keys, oidc, settings.metrics_auth)

    def check_key(self, key: str) -> Principal:
        """The principal of an API key (no I/O)."""
        entry = self.keys.match(key) if self.keys is not None else None
        if entry is None:
            raise UnauthenticatedError("the API key is not valid", "invalid_token")
        return entry.principal()

    async def authenticate(self, bearer: str | None, api_key: str | None) -> Principal:
        """The principal of a request's ``Authorization: Bearer`` value or ``X-API-Key``.

        Raises:
            UnauthenticatedError: no credential, or one that is not valid.
            InvalidInputError: both headers at once.
            AuthUnavailableError: the identity provider's keys cannot be fetched.
        """
        if not self.enabled:
            return ANONYMOUS
        bearer = bearer.strip() if bearer else None
        api_key = api_key.strip() if api_key else None
        if bearer and api_key:
            raise InvalidInputError("send one credential: Authorization or X-API-Key, not both")
        if api_key:
            return self.check_key(api_key)
        if not bearer:
            raise UnauthenticatedError(NO_CREDENTIAL)
        if self.oidc is not None and looks_like_jwt(bearer):
            return await self.oidc.verify(bearer)
        return self.check_key(bearer)

    def authorize(self, principal: Principal, scopes: tuple[str, ...]) -> None:
        """ForbiddenError unless ``principal`` holds ``admin`` or one of ``scopes``."""
        if not principal.allows(*scopes):
            needed = " or ".join(scopes)
            raise ForbiddenError(f"this operation needs the scope {needed} (or admin)", scopes)

    def authorize_metrics(self, principal: Principal) -> None:
        self.authorize(principal, (METRICS,))
