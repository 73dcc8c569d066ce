"""Safe reading of an uploaded zip (e.g. a DICOM series) in memory, without extraction.

Guards (every problem raises BadArchiveError): a corrupt or encrypted archive, too many
entries, too many bytes once expanded (checked against the declared sizes first, then against
the bytes actually inflated, read in bounded steps that never exceed the remaining budget),
extreme compression ratios (zip bombs), absolute paths, ``..`` components, drive letters
(backslashes count as separators) and symbolic links. Directories are skipped.

Entry names stay in memory for sorting and diagnostics only: they may hold patient names, so
they are never logged and never quoted in error messages (entries are named by their number).
"""

from __future__ import annotations

import io
import logging
import stat
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath

from service.errors import BadArchiveError

logger = logging.getLogger(__name__)

MAX_RATIO = 250
"""Largest accepted expanded / compressed size of one entry."""
RATIO_FLOOR_BYTES = 1 << 20
"""Entries expanding to at most this many bytes are not ratio-checked: a blank DICOM slice
compresses far beyond 250x, yet is no bomb (the total stays bounded by ``max_bytes``)."""
CHUNK = 1 << 20
# What zipfile raises on a corrupt entry while inflating it (bad CRC, truncated stream,
# unsupported compression method, a password needed).
_READ_ERRORS = (
    zipfile.BadZipFile,
    EOFError,
    OSError,
    ValueError,
    RuntimeError,
    NotImplementedError,
)


@dataclass(frozen=True, repr=False)
class Member:
    """One regular file of the archive.

    Attributes:
        name: the entry's relative path with ``/`` separators (checked: no absolute path, no
            ``..``); for sorting and in-memory diagnostics only, never to be logged.
        data: the entry's expanded bytes.
    """

    name: str
    data: bytes

    def __repr__(self) -> str:
        """No name (it may identify the patient): only the size."""
        return f"Member({len(self.data)} bytes)"

    __str__ = __repr__


def read_members(data: bytes, *, max_bytes: int, max_files: int) -> list[Member]:
    """The regular files of the zip ``data``, in archive order, expanded in memory (see
    :func:`iter_members` for the guards)."""
    return list(iter_members(data, max_bytes=max_bytes, max_files=max_files))


def iter_members(data: bytes, *, max_bytes: int, max_files: int) -> Iterator[Member]:
    """The regular files of the zip ``data``, one at a time in archive order (only the entry
    being handed out is held expanded in memory).

    Args:
        data: the zip file's bytes.
        max_bytes: most bytes all entries may expand to together.
        max_files: most entries (directories included) the archive may list.

    Raises:
        BadArchiveError: not a readable zip, encrypted, too many entries, expands beyond
            ``max_bytes`` or more than ``MAX_RATIO`` times, or an entry escapes the archive
            or is a symbolic link.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, OSError) as err:
        raise BadArchiveError(
            f"the upload is not a readable zip archive ({type(err).__name__}): "
            "send a zip made by a standard zip tool"
        ) from err
    if len(infos) > max_files:
        raise BadArchiveError(
            f"the zip has {len(infos)} entries, the limit is {max_files}: send fewer files"
        )
    if sum(info.file_size for info in infos) > max_bytes:
        raise BadArchiveError(
            f"the zip expands beyond {max_bytes} bytes (declared sizes): send a smaller archive"
        )
    checked = [(info, _checked_name(number, info)) for number, info in enumerate(infos, 1)]
    budget, count = max_bytes, 0
    for number, (info, name) in enumerate(checked, 1):
        if info.is_dir():
            continue
        content = _read_bounded(archive, info, number, budget)
        budget -= len(content)
        count += 1
        yield Member(name=name, data=content)
    logger.debug("zip read: %d file(s), %d bytes expanded", count, max_bytes - budget)


def _checked_name(number: int, info: zipfile.ZipInfo) -> str:
    """The entry's name with ``/`` separators, after the path, link, ratio and encryption checks."""
    path = PurePosixPath(info.filename.replace("\\", "/"))
    first = path.parts[0] if path.parts else ""
    if path.is_absolute() or ".." in path.parts or ":" in first:
        raise BadArchiveError(
            f"zip entry {number} has a path that escapes the archive (absolute, '..' or a drive "
            "letter): zip the files with relative paths"
        )
    if stat.S_ISLNK(info.external_attr >> 16):
        raise BadArchiveError(
            f"zip entry {number} is a symbolic link: zip the files themselves, not links"
        )
    if info.flag_bits & 0x1:
        raise BadArchiveError(f"zip entry {number} is encrypted: send an archive without password")
    if info.file_size > RATIO_FLOOR_BYTES and info.file_size > MAX_RATIO * max(
        info.compress_size, 1
    ):
        raise BadArchiveError(
            f"zip entry {number} expands more than {MAX_RATIO} times (a zip bomb?): "
            "send the files with ordinary compression"
        )
    return str(path)


def _read_bounded(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, number: int, budget: int
) -> bytes:
    """The entry's bytes; never reads more than ``budget + 1`` bytes of it."""
    parts: list[bytes] = []
    total = 0
    try:
        with archive.open(info) as source:
            while chunk := source.read(min(CHUNK, budget - total + 1)):
                total += len(chunk)
                if total > budget:
                    raise BadArchiveError(
                        "the zip expands beyond the configured size limit: send a smaller archive"
                    )
                parts.append(chunk)
    except _READ_ERRORS as err:
        raise BadArchiveError(
            f"zip entry {number} is corrupt ({type(err).__name__}): the archive is damaged"
        ) from err
    if total > RATIO_FLOOR_BYTES and total > MAX_RATIO * max(info.compress_size, 1):
        raise BadArchiveError(
            f"zip entry {number} expands more than {MAX_RATIO} times (a zip bomb?): "
            "send the files with ordinary compression"
        )
    return b"".join(parts)
