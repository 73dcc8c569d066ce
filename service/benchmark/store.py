"""Persistent benchmark runs (SQLAlchemy: SQLite by default, PostgreSQL by URL)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, DateTime, Integer, String, Text, create_engine, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker


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

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "set_name": self.set_name,
            "models": list(self.models),
            "n_images": self.n_images,
            "created": self.created.isoformat(),
            "finished": self.finished.isoformat() if self.finished else None,
            "error": self.error,
            "results": self.results,
        }


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class RunStore:
    """CRUD of benchmark runs; every method opens and closes its own session."""

    def __init__(self, url: str) -> None:
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        args = {"check_same_thread": False} if parsed.get_backend_name() == "sqlite" else {}
        self.engine = create_engine(url, connect_args=args)
        Base.metadata.create_all(self.engine)
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
        values: dict[str, Any] = {"status": status}
        if status in ("done", "failed"):
            values |= {"finished": now(), "results": results, "error": error}
        with self._session() as session:
            session.execute(update(Run).where(Run.id == run_id).values(**values))

    def get(self, run_id: str) -> dict[str, Any] | None:
        with self._session() as session:
            run = session.get(Run, run_id)
            return run.to_dict() if run else None

    def list(self, limit: int = 100, with_results: bool = False) -> list[dict[str, Any]]:
        """Newest first."""
        with self._session() as session:
            runs = session.scalars(select(Run).order_by(Run.created.desc()).limit(limit)).all()
            rows = [r.to_dict() for r in runs]
        if not with_results:
            for row in rows:
                row["results"] = None
        return rows

    def mark_interrupted(self) -> int:
        """Runs left queued/running by a previous process become ``interrupted``."""
        with self._session() as session:
            result = session.execute(
                update(Run)
                .where(Run.status.in_(("queued", "running")))
                .values(status="interrupted", finished=now(), error="the service restarted")
            )
            return int(getattr(result, "rowcount", 0) or 0)
