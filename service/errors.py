"""Domain exceptions of the core.

Every failure caused by the caller's input is one of these, with a message that says what was
wrong and how to fix it. The HTTP layer maps them to status codes in one place
(``service.api.errors``); the core itself knows nothing about HTTP.
"""


class LungsegError(Exception):
    """Base class of every domain error; ``str(err)`` is safe to show to the caller."""


class InvalidInputError(LungsegError):
    """The request or upload is malformed (empty file, broken archive, bad field)."""


class EmptyInputError(InvalidInputError):
    """The upload holds no bytes."""


class BadArchiveError(InvalidInputError):
    """A zip upload is corrupt, too large once expanded, or has paths escaping the archive."""


class UnsupportedMediaError(LungsegError):
    """The file is not an image we can decode (wrong type, non-image DICOM, corrupt pixels)."""


class UnsupportedModalityError(UnsupportedMediaError):
    """The image decodes but is of a modality we do not segment (e.g. MR, US)."""


class InputTooLargeError(LungsegError):
    """The upload exceeds a configured byte or pixel limit."""


class InvalidParameterError(LungsegError):
    """A parameter value is not one we accept (unknown model, modality or format).

    ``parameter`` names the request parameter at fault, when there is one.
    """

    def __init__(self, message: str, parameter: str | None = None) -> None:
        super().__init__(message)
        self.parameter = parameter


class NotFoundError(LungsegError):
    """A resource asked for by id does not exist (e.g. a benchmark job)."""


class ConflictError(LungsegError):
    """The resource exists but cannot give what was asked in its present state (a job not done
    yet; a DICOM SEG of a volume that came as NIfTI)."""


class ModelLoadError(LungsegError):
    """A model artifact is missing, corrupt or does not match its card (not the caller's fault)."""


class BusyError(LungsegError):
    """Too much of this kind of work is queued; the client should retry after a while."""

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class SeriesError(InvalidParameterError):
    """A DICOM series cannot be assembled into one volume (missing or duplicate slices, gantry
    tilt, mixed sizes or orientations); the message says which and how to fix the upload."""


class SeriesChoiceError(InvalidParameterError):
    """The upload holds several DICOM series (or not the one asked for): the caller must pick
    one with ``series_uid``.

    Attributes:
        series: one dict per image series found, with ``series_uid`` (str, "" when absent),
            ``description`` (SeriesDescription, "" when absent), ``modality`` (e.g. "CT") and
            ``instances`` (int). For the caller only: UIDs must never be logged.
    """

    def __init__(self, message: str, series: list[dict[str, str | int]]) -> None:
        super().__init__(message, "series_uid")
        self.series = series


class UploadTimeoutError(InvalidInputError):
    """The upload stopped arriving, or arrived too slowly, before it was complete."""


class UnauthenticatedError(LungsegError):
    """The request carries no credential, or one that is not valid (unknown API key; a token
    badly signed, expired, for another audience or issuer). ``str(err)`` never quotes it.

    ``error`` is the RFC 6750 error code when a credential was presented (``invalid_token``),
    None when there was none.
    """

    def __init__(self, message: str, error: str | None = None) -> None:
        super().__init__(message)
        self.error = error


class ForbiddenError(LungsegError):
    """The caller is authenticated but lacks the scope the operation needs (``scopes``: any
    one of them would do)."""

    def __init__(self, message: str, scopes: tuple[str, ...]) -> None:
        super().__init__(message)
        self.scopes = scopes


class AuthUnavailableError(BusyError):
    """The identity provider's signing keys cannot be fetched: tokens cannot be checked for now
    (never fetched yet and the JWKS endpoint does not answer); retry later."""


class PacsError(LungsegError):
    """The PACS (DICOMweb) could not be reached or refused a request; the message names the
    operation and the reason, never a UID or patient data.

    Attributes:
        retryable: whether the same request may succeed later (the PACS is down, timed out,
            overloaded or answered 5xx), as opposed to a refusal (4xx) that a retry repeats.
        status: the PACS's HTTP status, None when no answer came (refused, timed out).
    """

    def __init__(self, message: str, *, retryable: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status


class PacsNotFoundError(PacsError, NotFoundError):
    """The PACS does not hold the study or series asked for (HTTP 404, or an empty answer)."""

    def __init__(self, message: str, status: int | None = 404) -> None:
        super().__init__(message, retryable=False, status=status)


class PacsTooLargeError(PacsError, InputTooLargeError):
    """The PACS's answer exceeds the configured byte or instance limit (``max_bytes``)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False, status=None)
