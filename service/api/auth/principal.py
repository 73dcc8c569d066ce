"""Who is calling: the principal of a request and the scopes it may use."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

SEGMENT = "segment"
BENCHMARK = "benchmark"
METRICS = "metrics"
ADMIN = "admin"
SCOPES = (SEGMENT, BENCHMARK, METRICS, ADMIN)
"""Every scope a client can be given; ``admin`` stands for all of them."""

Method = Literal["api-key", "oidc", "none"]


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of a request, on ``request.state.principal`` once authenticated.

    ``name``: the API key's client name, the token's ``sub``, or ``anonymous`` when
    authentication is off (``method`` "none"); ``scopes``: what it was given.
    """

    name: str
    method: Method
    scopes: frozenset[str]

    def allows(self, *scopes: str) -> bool:
        """Whether the principal holds ``admin`` or any one of ``scopes``."""
        return ADMIN in self.scopes or not self.scopes.isdisjoint(scopes)


ANONYMOUS = Principal("anonymous", "none", frozenset(SCOPES))
"""Every request's principal when authentication is off (loopback, or LUNGSEG_AUTH=none)."""


class AuthConfigError(ValueError):
    """The authentication settings are unusable (a malformed keys file, partial OIDC settings,
    no authentication on a non-loopback address): the service refuses to start."""
