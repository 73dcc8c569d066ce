"""Authentication and scopes: API keys (``LUNGSEG_API_KEYS_FILE``) and OIDC access tokens.

Built once per app from the settings (:meth:`Authenticator.from_settings`, on
``app.state.authenticator``) and used by the route-level dependencies of ``service.api.deps``
(``require(scope)``), which put the :class:`Principal` on ``request.state.principal``.
``python -m service.api.auth new-key <client-name> <scopes>`` makes an API key.
"""

from service.api.auth.authenticator import Authenticator, is_loopback
from service.api.auth.keys import ApiKeys, new_key
from service.api.auth.oidc import OidcVerifier
from service.api.auth.principal import (
    ADMIN,
    ANONYMOUS,
    BENCHMARK,
    METRICS,
    SCOPES,
    SEGMENT,
    AuthConfigError,
    Principal,
)

__all__ = [
    "ADMIN",
    "ANONYMOUS",
    "BENCHMARK",
    "METRICS",
    "SCOPES",
    "SEGMENT",
    "ApiKeys",
    "AuthConfigError",
    "Authenticator",
    "OidcVerifier",
    "Principal",
    "is_loopback",
    "new_key",
]
