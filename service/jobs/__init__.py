"""One way of running work in the background: benchmark runs and volume jobs alike.

* :mod:`service.jobs.executor`: the interface (``Job``, ``Executor``, ``Reservation``) and its
  rules; :func:`record_outcome`.
* :mod:`service.jobs.local`: the in-process implementation (``LocalExecutor``).
* :mod:`service.jobs.queue`: the one the replicas share (``ProcrastinateExecutor``:
  procrastinate on the PostgreSQL job store), with its parts ``queue_schema`` (connection,
  schema), ``queue_leases`` (the workers, hand-back, recovery), ``queue_groups`` (the futures
  of posted jobs) and ``queue_loop`` (its event loop).
"""

from service.jobs.executor import (
    INTERNAL_ERROR,
    QUEUE_ERROR,
    Executor,
    Job,
    JobStopped,
    Loader,
    Reservation,
    Worker,
    record_outcome,
)
from service.jobs.local import LocalExecutor

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
