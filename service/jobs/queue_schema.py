"""The shared job queue's database: its connection string, procrastinate's schema, its names.

The queue lives in the job store's PostgreSQL database (``LUNGSEG_DATABASE_URL``): nothing else
is needed beside it. :func:`conninfo` turns the store's SQLAlchemy URL into libpq's connection
string, :func:`apply_schema` creates procrastinate's tables once per database (one replica at a
time: the advisory lock ``LOCK_KEY``, which also makes the stalled-job recovery of
:mod:`service.jobs.queue_leases` run in one replica at a time). A kind's jobs go to the queue
``QUEUE_PREFIX + kind``; ``ACTIVE_QUERY`` tells which of a set of queued jobs have not ended.
"""

from __future__ import annotations

import logging

import psycopg
from procrastinate.schema import SchemaManager
from sqlalchemy.engine import make_url

log = logging.getLogger("service.jobs.queue")  # the queue's log lines keep one logger name
QUEUE_PREFIX = "lungseg."
LOCK_KEY = 0x6C756E67  # advisory lock of the schema's creation and of the stalled-job recovery
ACTIVE_QUERY = (
    "SELECT id FROM procrastinate_jobs WHERE id = ANY(%(ids)s) AND status IN ('todo', 'doing')"
)


def conninfo(url: str) -> str:
    """The libpq connection string of a SQLAlchemy PostgreSQL URL
    (``postgresql+psycopg://user@/db?host=/socket`` -> ``postgresql://user@/db?host=/socket``).

    Raises:
        ValueError: not a PostgreSQL URL.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise ValueError("a shared job queue needs a PostgreSQL LUNGSEG_DATABASE_URL")
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


def apply_schema(info: str) -> bool:
    """Create procrastinate's tables, types and functions unless the database has them (one
    replica at a time: an advisory lock); returns whether they were created."""
    with psycopg.connect(info) as connection:  # one transaction, committed on exit
        connection.execute("SELECT pg_advisory_xact_lock(%s)", [LOCK_KEY])
        found = connection.execute("SELECT to_regclass('procrastinate_jobs')").fetchone()
        if found is not None and found[0] is not None:
            return False
        connection.execute(SchemaManager.get_schema())  # no parameters: several statements
    log.info("job queue: procrastinate's schema created")
    return True
