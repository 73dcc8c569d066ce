"""Persistent benchmark runs (SQLAlchemy: SQLite by default, PostgreSQL by URL).

Several workers (uvicorn workers, replicas) may share one store. Each store instance is an
``owner`` that keeps a lease on its queued and running runs by refreshing their ``heartbeat``
(``BenchmarkRunner`` does, every ``HEARTBEAT_S``). A run whose lease lapsed (no heartbeat for
``STALE_AFTER_S``) lost its worker: it reads as ``interrupted``, and start-up records it so.
A worker that starts therefore never marks the live runs of another one.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Engine,
    Integer,
    String,
    Text,
    create_engine,
    inspect,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

log = logging.getLogger(__name__)
HEARTBEAT_S = 10.0
STALE_AFTER_S = 60.0
ACTIVE = ("queued", "running")


class Base(DeclarativeBase):
    pass


class Run(Base):
    """One benchmark run: what was asked, its status and (when done) its results."""

    __tablename__ = "benchmark_runs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    set_name: Mapped[str] = mapped_column(String(255))
    models: Mapped[list[str]] = mapped_column(JSON)
    n_images: Mapped[int] = mapped_column(Integer)
    created: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    finished: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    results: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    owner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    heartbeat: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    def lapsed(self, stale_before: dt.datetime) -> bool:
        """Queued or running, but its worker has not renewed the lease since ``stale_before``."""
        beat = self.heartbeat
        return self.status in ACTIVE and (beat is None or utc(beat) < stale_before)

    def to_dict(self, stale_before: dt.datetime | None = None) -> dict[str, Any]:
        """The run as the API shows it; a lapsed lease reads as ``interrupted``."""
        lost = stale_before is not None and self.lapsed(stale_before)
        return {
            "id": self.id,
            "status": "interrupted" if lost else self.status,
            "set_name": self.set_name,
            "models": list(self.models),
            "n_images": self.n_images,
            "created": utc(self.created).isoformat(),
            "finished": utc(self.finished).isoformat() if self.finished else None,
            "error": LOST if lost else self.error,
            "results": self.results,
        }


LOST = "its worker stopped before the run finished"


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def utc(value: dt.datetime) -> dt.datetime:
    """SQLite returns naive datetimes: they were written in UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def _add_missing_columns(engine: Engine) -> None:
    """Columns added since a store was created (nullable ones) are added to its table."""
    table = Base.metadata.tables[Run.__tablename__]
    existing = {c["name"] for c in inspect(engine).get_columns(table.name)}
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
            if column.name not in {c["name"] for c in inspect(engine).get_columns(table.name)}:
                raise
        log.info("benchmark store: added column %s", column.name)


class RunStore:
    """CRUD of benchmark runs; every method opens and closes its own session."""

    def __init__(
        self, url: str, owner: str | None = None, stale_after_s: float = STALE_AFTER_S
    ) -> None:
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.stale_after = dt.timedelta(seconds=stale_after_s)
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        args = {"check_same_thread": False} if parsed.get_backend_name() == "sqlite" else {}
        self.engine = create_engine(url, connect_args=args)
        Base.metadata.create_all(self.engine)
        _add_missing_columns(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    def create(
        self, run_id: str, set_name: str, models: list[str], n_images: int
    ) -> dict[str, Any]:
        run = Run(
            id=run_id,
            status="queued",
            set_name=set_name,
            models=models,
            n_images=n_images,
            created=now(),
            owner=self.owner,
            heartbeat=now(),
        )
        with self._session() as session:
            session.add(run)
        return run.to_dict()

    def set_status(
        self,
        run_id: str,
        status: str,
        results: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        values: dict[str, Any] = {"status": status, "heartbeat": now()}
        if status in ("done", "failed"):
            values |= {"finished": now(), "results": results, "error": error}
        with self._session() as session:
            session.execute(update(Run).where(Run.id == run_id).values(**values))

    def get(self, run_id: str) -> dict[str, Any] | None:
        with self._session() as session:
            run = session.get(Run, run_id)
            return run.to_dict(self._stale_before()) if run else None

    def list(self, limit: int = 100, with_results: bool = False) -> list[dict[str, Any]]:
        """Newest first."""
        with self._session() as session:
            runs = session.scalars(select(Run).order_by(Run.created.desc()).limit(limit)).all()
            rows = [r.to_dict(self._stale_before()) for r in runs]
        if not with_results:
            for row in rows:
                row["results"] = None
        return rows

    def _stale_before(self) -> dt.datetime:
        return now() - self.stale_after

    def _interrupt(self, session: Session, *where: Any, error: str) -> int:
        result = session.execute(
            update(Run)
            .where(Run.status.in_(ACTIVE), *where)
            .values(status="interrupted", finished=now(), error=error)
        )
        return int(getattr(result, "rowcount", 0) or 0)

    def heartbeat(self) -> int:
        """Renew the lease on this owner's queued and running runs; returns how many."""
        with self._session() as session:
            result = session.execute(
                update(Run)
                .where(Run.owner == self.owner, Run.status.in_(ACTIVE))
                .values(heartbeat=now())
            )
            return int(getattr(result, "rowcount", 0) or 0)

    def mark_interrupted(self) -> int:
        """Record as ``interrupted`` the queued/running runs whose lease lapsed (their worker
        is gone); another worker's live runs are left alone. Returns how many."""
        lapsed = or_(Run.heartbeat.is_(None), Run.heartbeat < self._stale_before())
        with self._session() as session:
            return self._interrupt(session, lapsed, error=LOST)

    def abandon(self) -> int:
        """This owner stops: its queued and running runs become ``interrupted`` now."""
        with self._session() as session:
            return self._interrupt(
                session,
                Run.owner == self.owner,
                error="the service stopped before the run finished",
            )
