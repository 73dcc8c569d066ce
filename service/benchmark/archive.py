"""Safe extraction of an uploaded labelled set (zip) into a fresh temporary folder.

Guards: corrupt archives, too many entries, too many bytes once expanded (checked against both
the declared sizes and the bytes actually written), extreme compression ratios (zip bombs),
absolute paths, ``..`` components and symbolic links (paths escaping the archive).
"""

from __future__ import annotations

import io
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from service.errors import BadArchiveError

MAX_RATIO = 250
CHUNK = 1 << 20


def _check_member(info: zipfile.ZipInfo) -> PurePosixPath:
    name = info.filename.replace("\\", "/")
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        raise BadArchiveError(f"zip entry {info.filename!r} escapes the archive")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise BadArchiveError(f"zip entry {info.filename!r} is a symbolic link")
    if info.compress_size and info.file_size / info.compress_size > MAX_RATIO:
        raise BadArchiveError(f"zip entry {info.filename!r} expands {MAX_RATIO}x+ (zip bomb?)")
    return path


def _copy_limited(source: io.BufferedIOBase, target: Path, budget: int) -> int:
    written = 0
    with target.open("wb") as out:
        while chunk := source.read(CHUNK):
            written += len(chunk)
            if written > budget:
                raise BadArchiveError("the zip expands beyond the configured size limit")
            out.write(chunk)
    return written


def extract_zip(data: bytes, max_bytes: int, max_files: int) -> Path:
    """Extract ``data`` (zip bytes) into a new temporary folder and return that folder.

    The caller owns the folder and removes it (``shutil.rmtree``) when done.
    Raises BadArchiveError for every problem with the archive.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError) as err:
        raise BadArchiveError(f"not a readable zip archive: {err}") from err
    members = archive.infolist()
    if len(members) > max_files:
        raise BadArchiveError(f"the zip has {len(members)} entries, the limit is {max_files}")
    if sum(m.file_size for m in members) > max_bytes:
        raise BadArchiveError(f"the zip expands beyond {max_bytes} bytes")
    checked = [(m, _check_member(m)) for m in members]
    root = Path(tempfile.mkdtemp(prefix="lungseg-set-"))
    try:
        budget = max_bytes
        for info, path in checked:
            target = root.joinpath(*path.parts)
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as source:
                budget -= _copy_limited(source, target, budget)  # type: ignore[arg-type]
    except (BadArchiveError, zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
        shutil.rmtree(root, ignore_errors=True)
        if isinstance(err, BadArchiveError):
            raise
        raise BadArchiveError(f"the zip is corrupt: {err}") from err
    return root


def find_set_root(folder: Path) -> Path:
    """The folder holding the set: ``folder`` itself or its single top-level subfolder."""
    entries = [p for p in folder.iterdir() if not p.name.startswith(("__MACOSX", "."))]
    if len(entries) == 1 and entries[0].is_dir() and not (folder / "meta.csv").exists():
        return entries[0]
    return folder
