"""Reading the files of a labelled set as untrusted input (an uploaded set is hostile until
proven otherwise).

Every path a manifest names is relative, stays inside the set's folder once resolved, and is
a regular file (no symbolic link, device, FIFO or folder); its size is checked before it is
read, and it is opened without following a link. Messages name the manifest row or the kind
of file, never a path (paths are never logged either).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path, PurePosixPath, PureWindowsPath

from service.errors import InputTooLargeError, InvalidInputError

MAX_FILE_BYTES = 64 * 1024 * 1024
"""Largest image or mask file of a set (as LUNGSEG_MAX_UPLOAD_BYTES for a single upload)."""


def inside(root: Path, relative: str, what: str) -> Path:
    """``root / relative`` after checking that ``relative`` cannot leave ``root``.

    Raises:
        InvalidInputError: an absolute path, a drive letter, a backslash, ``..``, a NUL byte,
            or a path that resolves outside ``root`` (through a link on the way).
    """
    text = relative.strip()
    pure = PurePosixPath(text)
    windows = PureWindowsPath(text)
    if (
        not text
        or "\0" in text
        or "\\" in text
        or pure.is_absolute()
        or windows.drive
        or ".." in pure.parts
    ):
        raise InvalidInputError(f"{what} must be a relative path inside the set")
    path = root / pure
    base = root.resolve()
    if not path.resolve().is_relative_to(base):
        raise InvalidInputError(f"{what} leads outside the set")
    return path


def regular_file(path: Path, what: str) -> Path | None:
    """``path`` when it is a regular file, ``None`` when it does not exist.

    Raises:
        InvalidInputError: it is a symbolic link, a device, a FIFO, a socket or a folder.
    """
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise InvalidInputError(f"{what} cannot be read ({type(err).__name__})") from err
    if not stat.S_ISREG(info.st_mode):
        raise InvalidInputError(f"{what} is not a regular file (a link, device or folder)")
    return path


def read_file(path: Path, what: str, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``, opened without following links.

    Raises:
        InvalidInputError: missing, not a regular file, unreadable.
        InputTooLargeError: larger than ``max_bytes`` (checked before reading).
    """
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        descriptor = os.open(path, flags)
    except OSError as err:
        raise InvalidInputError(f"{what} cannot be opened ({type(err).__name__})") from err
    with os.fdopen(descriptor, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise InvalidInputError(f"{what} is not a regular file (a link, device or folder)")
        if info.st_size > max_bytes:
            raise InputTooLargeError(f"{what} is {info.st_size} bytes, more than {max_bytes}")
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise InputTooLargeError(f"{what} is larger than {max_bytes} bytes")
    return data
