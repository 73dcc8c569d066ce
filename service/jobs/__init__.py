"""One way of running work in the background: benchmark runs and volume jobs alike.

See :mod:`service.jobs.executor` for the interface (``Job``, ``Executor``, ``Reservation``) and
the in-process implementation (``LocalExecutor``), and for the seam a distributed task queue
(procrastinate on PostgreSQL) plugs into.
"""

from service.jobs.executor import (
    INTERNAL_ERROR,
    Executor,
    Job,
    JobStopped,
    LocalExecutor,
    Reservation,
    Worker,
    record_outcome,
)

__all__ = [
    "INTERNAL_ERROR",
    "Executor",
    "Job",
    "JobStopped",
    "LocalExecutor",
    "Reservation",
    "Worker",
    "record_outcome",
]
