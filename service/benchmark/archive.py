"""An uploaded labelled set (zip) extracted into a private folder of this worker, bounded.

The archive's guards (corrupt, too many entries, expanded size, zip bombs, paths escaping it,
links) are those of ``service.imaging.archive``, which hands the entries out one at a time.
Extracted sets hold patient images, so they live only while their run does:

* each worker process extracts into its own folder (``lungseg-<pid>-*`` under the temporary
  directory, mode 0700), one subfolder per upload, removed when the run ends or is refused;
* the worker's folder is removed at shutdown, and a starting worker removes the folders of
  workers that no longer run (after a crash or SIGKILL);
* all of a worker's extracted sets together stay under a disk quota.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from service.errors import BadArchiveError, BusyError
from service.imaging.archive import iter_members

log = logging.getLogger(__name__)
PREFIX = "lungseg-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale(parent: Path) -> int:
    """Remove the extraction folders of worker processes that are gone; returns how many."""
    removed = 0
    for folder in parent.glob(f"{PREFIX}*-*"):
        pid = folder.name[len(PREFIX) :].split("-", 1)[0]
        if folder.is_dir() and pid.isdigit() and not _alive(int(pid)) and int(pid) != os.getpid():
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    if removed:
        log.warning("removed %d extraction folders left by stopped workers", removed)
    return removed


class ExtractionArea:
    """This worker's private folder for extracted uploads, with a disk quota.

    Args:
        quota_bytes: most bytes all sets extracted by this worker may hold at once.
        parent: where the worker's folder is made (default: the temporary directory).
    """

    def __init__(self, quota_bytes: int, parent: Path | None = None) -> None:
        self.parent = Path(parent or tempfile.gettempdir())
        remove_stale(self.parent)
        self.root = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=self.parent))
        self.quota_bytes = quota_bytes

    def used_bytes(self) -> int:
        """Bytes held by the sets extracted now."""
        return sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file())

    def extract(self, data: bytes, max_bytes: int, max_files: int) -> Path:
        """Extract the zip ``data`` into a new subfolder; the caller removes it when done.

        Raises:
            BadArchiveError: every problem with the archive (the partial folder is removed).
            BusyError: the worker's quota has no room for another set now.
        """
        room = self.quota_bytes - self.used_bytes()
        if room <= 0:
            raise BusyError("the worker's disk quota for uploaded sets is in use; retry later", 30)
        folder = Path(tempfile.mkdtemp(prefix="set-", dir=self.root))
        try:
            budget = min(max_bytes, room)
            for member in iter_members(data, max_bytes=budget, max_files=max_files):
                target = folder.joinpath(*member.name.split("/"))
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(member.data)
        except OSError as err:
            shutil.rmtree(folder, ignore_errors=True)
            raise BadArchiveError(f"the zip could not be extracted ({type(err).__name__})") from err
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return folder

    def close(self) -> None:
        """Remove every set of this worker (at shutdown)."""
        shutil.rmtree(self.root, ignore_errors=True)


def find_set_root(folder: Path) -> Path:
    """The folder holding the set: ``folder`` itself or its single top-level subfolder."""
    entries = [p for p in folder.iterdir() if not p.name.startswith(("__MACOSX", "."))]
    if len(entries) == 1 and entries[0].is_dir() and not (folder / "meta.csv").exists():
        return entries[0]
    return folder
