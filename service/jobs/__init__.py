"""One way of running work in the background: benchmark runs and volume jobs alike.

See :mod:`service.jobs.executor` for the interface (``Job``, ``Executor``, ``Reservation``) and
the in-process implementation (``LocalExecutor``); :mod:`service.jobs.queue` holds the one
shared by replicas (``ProcrastinateExecutor``: procrastinate on the PostgreSQL job store), with
its parts: ``queue_schema`` (connection, schema), ``queue_leases`` (the workers, hand-back,
recovery), ``queue_groups`` (the futures of posted jobs), ``queue_loop`` (its event loop).
"""

from service.jobs.executor import (
    INTERNAL_ERROR,
    QUEUE_ERROR,
    Executor,
    Job,
    JobStopped,
    Loader,
    LocalExecutor,
    Reservation,
    Worker,
    record_outcome,
)

__all__ = [
    "INTERNAL_ERROR",
    "QUEUE_ERROR",
    "Executor",
    "Job",
    "JobStopped",
    "Loader",
    "LocalExecutor",
    "Reservation",
    "Worker",
    "record_outcome",
]
