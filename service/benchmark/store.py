"""Persistent benchmark runs: ``RunStore``, the ``benchmark_runs`` kind of ``JobStore``.

The lease rules (owner, heartbeat, lapsed runs recorded ``interrupted`` by the next worker that
reads them or whose heartbeat ticks, ``abandon`` at shutdown) are ``service.benchmark.jobstore``'s,
shared with the volume jobs of ``service.benchmark.volume_store``. A run reads as the API shows
it (``Run.to_dict``):

    RunStore(url_or_engine, owner=None, stale_after_s=STALE_AFTER_S)
    .create(run_id, set_name, models, n_images) -> dict      # queued, leased by this owner
    .set_status(run_id, status, results=None, error=None)     # running | done | failed
    .get(run_id) -> dict | None
    .list(limit=100, with_results=False) -> list[dict]        # newest first
    .heartbeat() / .mark_interrupted() / .abandon() -> int    # JobStore
    .maintain() / .close()                                    # JobStore
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from sqlalchemy import JSON, Integer, String, select, update
from sqlalchemy.orm import Mapped, mapped_column

from service.benchmark.jobstore import (
    ACTIVE,
    HEARTBEAT_S,
    STALE_AFTER_S,
    Base,
    Heartbeat,
    JobStore,
    Leased,
    iso,
    now,
    utc,
)

__all__ = [
    "ACTIVE",
    "HEARTBEAT_S",
    "LOST",
    "STALE_AFTER_S",
    "Base",
    "Heartbeat",
    "Run",
    "RunStore",
    "now",
    "utc",
]

LOST = "its worker stopped before the run finished"
STOPPED = "the service stopped before the run finished"


class Run(Leased, Base):
    """One benchmark run: what was asked, its status and (when done) its results."""

    __tablename__ = "benchmark_runs"

    set_name: Mapped[str] = mapped_column(String(255))
    models: Mapped[list[str]] = mapped_column(JSON)
    n_images: Mapped[int] = mapped_column(Integer)
    results: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)

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
            "finished": iso(self.finished),
            "error": LOST if lost else self.error,
            "results": self.results,
        }


class RunStore(JobStore[Run]):
    """CRUD of benchmark runs; every method opens and closes its own session."""

    model = Run
    tables: ClassVar[tuple[str, ...]] = (Run.__tablename__,)
    lost_error: ClassVar[str] = LOST
    stopped_error: ClassVar[str] = STOPPED

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
            session.execute(
                update(Run)
                .where(Run.id == run_id)
                .values(**values)
                .execution_options(synchronize_session=False)
            )

    def get(self, run_id: str) -> dict[str, Any] | None:
        """The run, its row first recorded ``interrupted`` if its lease lapsed."""
        with self._session() as session:
            run = session.get(Run, run_id)
            if run is None:
                return None
            self._settle(session, [run])
            return run.to_dict(self._stale_before())

    def list(self, limit: int = 100, with_results: bool = False) -> list[dict[str, Any]]:
        """Newest first; lapsed runs among them are recorded ``interrupted``."""
        with self._session() as session:
            runs = session.scalars(select(Run).order_by(Run.created.desc()).limit(limit)).all()
            self._settle(session, runs)
            stale_before = self._stale_before()
            rows = [r.to_dict(stale_before) for r in runs]
        if not with_results:
            for row in rows:
                row["results"] = None
        return rows
