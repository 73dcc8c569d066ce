"""Settings of one PACS's DICOMweb endpoint: passed in by the caller, never read from globals."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True, repr=False)
class DicomwebConfig:
    """How to reach and bound one DICOMweb service (QIDO-RS, WADO-RS, STOW-RS).

    Attributes:
        base_url: the DICOMweb root, e.g. ``http://pacs:8042/dicom-web`` (no credentials in
            it; a trailing slash is ignored).
        username, password: HTTP basic credentials; or ``bearer_token`` (not both).
        connect_timeout_s: seconds to open a connection.
        idle_timeout_s: an answer that sends no byte for this long is abandoned (as an upload
            that stops arriving is).
        deadline_s: most seconds for one call, retries and their waits included.
        max_bytes: most bytes of one answer (a retrieved series in all; a STOW or QIDO
            answer), counted while they arrive, as the upload limit is; 0 < max_bytes.
        max_instances: most instances in one retrieved series.
        retries: further attempts of an idempotent call (QIDO, WADO) after a retryable
            failure; STOW-RS only when the PACS says it is busy (429, 503) or the connection
            could not be opened (nothing was sent).
        backoff_s, max_backoff_s: the wait before retry ``n`` (0-based) is
            ``min(max_backoff_s, backoff_s * 2**n)``, or the PACS's Retry-After (capped).
        verify_tls: verify the PACS's certificate (or the path of a CA bundle).
    """

    base_url: str
    username: str | None = None
    password: str | None = None
    bearer_token: str | None = None
    connect_timeout_s: float = 5.0
    idle_timeout_s: float = 30.0
    deadline_s: float = 600.0
    max_bytes: int = 64 * 1024 * 1024
    max_instances: int = 4096
    retries: int = 3
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    verify_tls: bool | str = True

    def __post_init__(self) -> None:
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("the DICOMweb base URL must be an http(s) URL with a host")
        if parts.username or parts.password:
            raise ValueError("put the DICOMweb credentials in username/password, not the URL")
        if self.bearer_token and (self.username or self.password):
            raise ValueError("give either basic credentials or a bearer token, not both")
        if (self.username is None) != (self.password is None):
            raise ValueError("basic credentials need both a username and a password")
        for name in ("connect_timeout_s", "idle_timeout_s", "deadline_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        if self.max_bytes <= 0 or self.max_instances <= 0:
            raise ValueError("max_bytes and max_instances must be positive")
        if self.retries < 0 or self.backoff_s < 0 or self.max_backoff_s < 0:
            raise ValueError("retries and backoff must not be negative")

    @property
    def root(self) -> str:
        """The base URL without its trailing slash."""
        return self.base_url.rstrip("/")

    @property
    def auth_kind(self) -> str:
        return "bearer" if self.bearer_token else "basic" if self.username else "none"

    def __repr__(self) -> str:
        """The host and the kind of credentials only."""
        return f"DicomwebConfig({urlsplit(self.base_url).hostname}, auth={self.auth_kind})"

    __str__ = __repr__
