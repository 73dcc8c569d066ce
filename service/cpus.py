"""How many CPU cores this process may really use: its affinity, capped by a cgroup CPU quota.

In a container with a CPU limit (Kubernetes ``resources.limits.cpu``), the affinity and
``os.cpu_count()`` still show every core of the node; sizing thread pools from them would run
dozens of threads on a 2-CPU quota and have the kernel throttle the pod. The quota is read from
cgroup v2 (``cpu.max``) or v1 (``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _fields(path: Path) -> list[str] | None:
    try:
        return path.read_text(encoding="ascii").split()
    except (OSError, UnicodeDecodeError):
        return None


def cpu_quota(root: Path = CGROUP_ROOT) -> float | None:
    """The CPU limit in cores (e.g. 2.0), or ``None`` when there is none or it cannot be read."""
    v2 = _fields(root / "cpu.max")  # "<quota|max> <period>"
    if v2 is not None and len(v2) == 2 and v2[0] != "max":
        try:
            quota, period = int(v2[0]), int(v2[1])
        except ValueError:
            return None
        return quota / period if quota > 0 and period > 0 else None
    quota_v1 = _fields(root / "cpu" / "cpu.cfs_quota_us")
    period_v1 = _fields(root / "cpu" / "cpu.cfs_period_us")
    if quota_v1 and period_v1:
        try:
            quota, period = int(quota_v1[0]), int(period_v1[0])
        except ValueError:
            return None
        return quota / period if quota > 0 and period > 0 else None
    return None


def usable_cores(root: Path = CGROUP_ROOT) -> int:
    """Cores of the affinity mask, at most the cgroup quota rounded down (at least 1)."""
    if hasattr(os, "sched_getaffinity"):
        cores = len(os.sched_getaffinity(0))
    else:  # macOS, Windows
        cores = os.cpu_count() or 1
    quota = cpu_quota(root)
    if quota is not None:
        cores = min(cores, int(quota))
    return max(1, cores)


@dataclass(frozen=True)
class WorkerShare:
    """What one worker process may use: its cores, concurrent inferences, waiting requests and
    threads per inference, so that threads x inferences never exceed the cores.

    Build it with :meth:`of`; 0 for a limit means "derived from the cores".
    """

    cores: int
    in_flight: int
    queue: int
    threads_per_inference: int

    @classmethod
    def of(
        cls,
        workers: int = 1,
        max_in_flight: int = 0,
        max_queue: int = 0,
        intra_op_threads: int = 0,
        root: Path = CGROUP_ROOT,
    ) -> WorkerShare:
        """The machine's usable cores shared by ``workers``; in-flight inferences default to
        one per core, the queue to 4 per core, threads to cores / in-flight."""
        cores = max(1, usable_cores(root) // max(workers, 1))
        in_flight = max_in_flight or cores
        threads = intra_op_threads or max(1, cores // in_flight)
        return cls(cores, in_flight, max_queue or 4 * cores, threads)
