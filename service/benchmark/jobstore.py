"""Jobs with a lease, shared by several workers (SQLAlchemy: SQLite by default, PostgreSQL by URL).

One database holds every kind of job; each kind is a table of ``Leased`` rows (``id``,
``status``, ``created``, ``finished``, ``error``, ``owner``, ``heartbeat``) and a ``JobStore``
subclass that adds what the kind needs:

- ``RunStore`` (``service.benchmark.store``): benchmark runs, table ``benchmark_runs``.
- ``VolumeStore`` (``service.benchmark.volume_store``): volume segmentation jobs with progress,
  opaque JSON params and result, an expiry, and their artifacts (bytes), tables ``volume_jobs``
  and ``volume_artifacts``.

The lease rules are this module's, the same for every kind:

- A store instance is an ``owner``. A job is ``queued`` or ``running`` while its owner renews
  its ``heartbeat`` (``JobStore.heartbeat``, every ``HEARTBEAT_S`` by a ``Heartbeat`` thread;
  ``LUNGSEG_JOB_HEARTBEAT_S`` in the service).
- A job whose lease lapsed (no heartbeat for ``stale_after_s``, ``STALE_AFTER_S`` by default,
  ``LUNGSEG_JOB_LEASE_S`` in the service) lost
  its worker. The next worker that reads it (``get``/``list``) or whose ``Heartbeat`` ticks
  (``mark_interrupted``, jobs of any owner) records the row as ``interrupted`` with its
  ``finished`` time and the error ``lost_error``. The marking is one conditional ``UPDATE ...
  WHERE status IN (queued, running) AND heartbeat < stale`` so that of two workers racing only
  one writes, and a job whose owner renewed its lease meanwhile is never marked: a live job of
  another worker is left alone.
- A job that travels (``service.jobs.queue``: run by whichever replica's worker takes it from
  the shared queue) is created owned by :data:`QUEUE_OWNER`: no lease of one worker applies to
  it and it is never recorded interrupted for a lapsed heartbeat; the queue's recovery runs it
  again when the replica running it died, or records it interrupted (``interrupt``) when it
  cannot.
- ``abandon()``: this owner stops; its queued and running jobs are ``interrupted`` now
  (``stopped_error``).
- ``maintain()`` is what the ``Heartbeat`` thread calls: ``heartbeat()``, ``mark_interrupted()``
  and the kind's housekeeping (``VolumeStore`` purges expired jobs and artifacts).

Stores of several kinds may share one engine: ``VolumeStore(run_store.engine)``; a store built
from a URL owns its engine (``close()`` disposes of it). Each store creates its own tables
(``create_all``) and adds the nullable columns a table of an older schema lacks.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from sqlalchemy import (
    ColumnElement,
    DateTime,
    Engine,
    String,
    Table,
    Text,
    and_,
    create_engine,
    inspect,
    or_,
    text,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

log = logging.getLogger(__name__)
HEARTBEAT_S = 10.0
STALE_AFTER_S = 60.0
ACTIVE = ("queued", "running")
QUEUE_OWNER = "shared-queue"
"""The owner of a job that travels: the shared queue's recovery decides its fate, not a lease."""


class Base(DeclarativeBase):
    pass


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def utc(value: dt.datetime) -> dt.datetime:
    """SQLite returns naive datetimes: they were written in UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def iso(value: dt.datetime | None) -> str | None:
    return utc(value).isoformat() if value is not None else None


class Leased:
    """The columns of a job with a lease (a mixin of each kind's table)."""

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    created: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    finished: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    owner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    heartbeat: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    def lapsed(self, stale_before: dt.datetime) -> bool:
        """Queued or running, but its worker has not renewed the lease since ``stale_before``."""
        beat = self.heartbeat
        leased = self.owner != QUEUE_OWNER
        return self.status in ACTIVE and leased and (beat is None or utc(beat) < stale_before)


J = TypeVar("J", bound=Leased)


def open_engine(url: str) -> Engine:
    """An engine for ``url``; an SQLite file's folder is created."""
    parsed = make_url(url)
    sqlite = parsed.get_backend_name() == "sqlite"
    if sqlite and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    return create_engine(url, connect_args={"check_same_thread": False} if sqlite else {})


def _columns(engine: Engine, table: Table) -> set[str]:
    return {c["name"] for c in inspect(engine).get_columns(table.name)}


def create_tables(engine: Engine, tables: Sequence[Table]) -> None:
    """Create missing ``tables`` and add the (nullable) columns added to them since a store was
    created; safe when several workers start at once."""
    for attempt in range(3):
        try:
            Base.metadata.create_all(engine, tables=list(tables))
            break
        except DBAPIError:  # another worker created one between the check and the CREATE
            if attempt == 2:
                raise
            log.info("job store: tables created meanwhile by another worker; checking again")
    for table in tables:
        existing = _columns(engine, table)
        for column in table.columns:
            if column.name in existing:
                continue
            kind = column.type.compile(engine.dialect)
            try:
                with engine.begin() as connection:
                    connection.execute(
                        text(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}")
                    )
            except DBAPIError:  # another worker added it first
                if column.name not in _columns(engine, table):
                    raise
            log.info("job store: added column %s.%s", table.name, column.name)


def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class JobStore(Generic[J]):
    """The lease logic over one table of ``Leased`` rows (``model``); every method opens and
    closes its own session. Subclasses set ``model``, ``tables`` and the two error texts."""

    model: type[J]
    tables: ClassVar[tuple[str, ...]]
    lost_error: ClassVar[str] = "its worker stopped before the job finished"
    stopped_error: ClassVar[str] = "the service stopped before the job finished"

    def __init__(
        self, url: str | Engine, owner: str | None = None, stale_after_s: float = STALE_AFTER_S
    ) -> None:
        self.owner = owner or default_owner()
        self.stale_after = dt.timedelta(seconds=stale_after_s)
        self._owns_engine = not isinstance(url, Engine)
        self.engine = open_engine(url) if isinstance(url, str) else url
        create_tables(self.engine, [Base.metadata.tables[name] for name in self.tables])
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def close(self) -> None:
        """Dispose of the engine when this store opened it."""
        if self._owns_engine:
            self.engine.dispose()

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    def _stale_before(self) -> dt.datetime:
        return now() - self.stale_after

    def _lapsed(self) -> ColumnElement[bool]:
        beat, owner = self.model.heartbeat, self.model.owner
        return and_(
            self.model.status.in_(ACTIVE),
            or_(owner.is_(None), owner != QUEUE_OWNER),
            or_(beat.is_(None), beat < self._stale_before()),
        )

    def _interrupt(self, session: Session, *where: Any, error: str) -> int:
        result = session.execute(
            update(self.model)
            .where(self.model.status.in_(ACTIVE), *where)
            .values(status="interrupted", finished=now(), error=error)
            .execution_options(synchronize_session=False)
        )
        return int(getattr(result, "rowcount", 0) or 0)

    def _settle(self, session: Session, rows: Iterable[J]) -> None:
        """Record as ``interrupted`` those of ``rows`` whose lease lapsed and reload them, so
        that they read as the database holds them (another worker may have marked them)."""
        stale_before = self._stale_before()
        lapsed = [row for row in rows if row.lapsed(stale_before)]
        if not lapsed:
            return
        self._interrupt(
            session,
            self.model.id.in_([row.id for row in lapsed]),
            self._lapsed(),
            error=self.lost_error,
        )
        for row in lapsed:
            session.refresh(row)

    def heartbeat(self) -> int:
        """Renew the lease on this owner's queued and running jobs; returns how many."""
        with self._session() as session:
            result = session.execute(
                update(self.model)
                .where(self.model.owner == self.owner, self.model.status.in_(ACTIVE))
                .values(heartbeat=now())
                .execution_options(synchronize_session=False)
            )
            return int(getattr(result, "rowcount", 0) or 0)

    def mark_interrupted(self) -> int:
        """Record as ``interrupted`` the queued/running jobs of any owner whose lease lapsed
        (their worker is gone); another worker's live jobs are left alone. Returns how many."""
        with self._session() as session:
            return self._interrupt(session, self._lapsed(), error=self.lost_error)

    def interrupt(self, job_id: str, error: str | None = None) -> bool:
        """Record the job ``interrupted`` (``error``: ``lost_error`` by default) unless it
        ended already; returns whether it was."""
        with self._session() as session:
            found = self._interrupt(
                session, self.model.id == job_id, error=error or self.lost_error
            )
            return found > 0

    def abandon(self) -> int:
        """This owner stops: its queued and running jobs become ``interrupted`` now."""
        with self._session() as session:
            return self._interrupt(
                session, self.model.owner == self.owner, error=self.stopped_error
            )

    def housekeeping(self) -> None:
        """The kind's periodic work after the lease's (none here)."""

    def maintain(self) -> None:
        """One tick of the ``Heartbeat``: renew this owner's leases, record lapsed jobs of any
        owner as interrupted, then the kind's housekeeping."""
        self.heartbeat()
        self.mark_interrupted()
        self.housekeeping()


class Heartbeat:
    """A daemon thread calling ``maintain()`` on each of ``stores`` every ``every_s`` seconds
    until ``stop()``; a database error is logged and the next tick tries again."""

    def __init__(
        self,
        stores: Sequence[JobStore[Any]],
        every_s: float = HEARTBEAT_S,
        name: str = "lungseg-heartbeat",
    ) -> None:
        self.stores = list(stores)
        self.every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            for store in self.stores:
                try:
                    store.maintain()
                except SQLAlchemyError:  # a database hiccup must not end the lease thread
                    log.warning("job store heartbeat failed", exc_info=True)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop ticking; waits up to ``timeout_s`` for a tick in progress."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout_s)
