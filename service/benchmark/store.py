"""Persistent benchmark runs: ``RunStore``, the ``benchmark_runs`` kind of ``JobStore``.

The lease rules (owner, heartbeat, lapsed runs recorded ``interrupted`` by the next worker that
reads them or whose heartbeat ticks, ``abandon`` at shutdown) are ``service.benchmark.jobstore``'s,
shared with the volume jobs of ``service.benchmark.volume_store``. A run reads as the API shows
it (``Run.to_dict``):

    RunStore(url_or_engine, owner=None, stale_after_s=STALE_AFTER_S)
    .create(run_id, set_name, models, n_images, owner=None, chunks=None) -> dict   # queued
    .set_status(run_id, status, results=None, error=None) -> bool   # running | done | failed
    .get(run_id) -> dict | None
    .list(limit=100, with_results=False) -> list[dict]        # newest first
    .heartbeat() / .mark_interrupted() / .abandon() / .interrupt(run_id) # JobStore
    .maintain() / .close()                                    # JobStore

A run of a server-side set is split into **chunks** (table ``benchmark_chunks``: the run, the
chunk's index, its images ``[start, stop)``, status, the ``worker`` that ran it last, its
``attempts``, its result until the run is merged), each a job of its own that any replica may
run:

    .chunk(run_id, index) -> dict | None          # what the chunk's worker needs
    .start_chunk(run_id, index, worker) -> bool   # False: the run is no longer active
    .finish_chunk(run_id, index, result, merge) -> bool   # the last one merges, in one go
    .chunks(run_id) -> list[dict]                 # index, status, worker, attempts, times

``start_chunk`` and ``finish_chunk`` lock the run's row (``SELECT ... FOR UPDATE``), so that of
two chunks ending at once exactly one sees every chunk done and writes the merged results.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from sqlalchemy import JSON, DateTime, Integer, String, func, select, update
from sqlalchemy.orm import Mapped, mapped_column

from service.benchmark.jobstore import (
    ACTIVE,
    HEARTBEAT_S,
    QUEUE_OWNER,
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
    "QUEUE_OWNER",
    "STALE_AFTER_S",
    "Base",
    "Chunk",
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


class Chunk(Base):
    """One chunk of a run of a server-side set: images ``[start, stop)`` of the set."""

    __tablename__ = "benchmark_chunks"

    run_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    number: Mapped[int] = mapped_column(Integer, primary_key=True)
    start: Mapped[int] = mapped_column(Integer)
    stop: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    worker: Mapped[str | None] = mapped_column(String(128), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    started: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.number,
            "start": self.start,
            "stop": self.stop,
            "status": self.status,
            "worker": self.worker,
            "attempts": self.attempts,
            "started": iso(self.started),
            "finished": iso(self.finished),
        }


Merge = Callable[[list[dict[str, Any]]], tuple[str, dict[str, Any] | None, str | None]]
"""The chunks' results in index order -> (status ``done``/``failed``, results, error)."""


class RunStore(JobStore[Run]):
    """CRUD of benchmark runs; every method opens and closes its own session."""

    model = Run
    tables: ClassVar[tuple[str, ...]] = (Run.__tablename__, Chunk.__tablename__)
    lost_error: ClassVar[str] = LOST
    stopped_error: ClassVar[str] = STOPPED

    def create(
        self,
        run_id: str,
        set_name: str,
        models: list[str],
        n_images: int,
        owner: str | None = None,
        chunks: Sequence[tuple[int, int]] | None = None,
    ) -> dict[str, Any]:
        """A queued run, leased by this owner (``owner``: :data:`QUEUE_OWNER` for a run whose
        chunks travel), with its ``chunks`` (images ``[start, stop)`` each) if it has any."""
        run = Run(
            id=run_id,
            status="queued",
            set_name=set_name,
            models=models,
            n_images=n_images,
            created=now(),
            owner=owner or self.owner,
            heartbeat=now(),
        )
        with self._session() as session:
            session.add(run)
            for index, (start, stop) in enumerate(chunks or []):
                session.add(
                    Chunk(
                        run_id=run_id,
                        number=index,
                        start=start,
                        stop=stop,
                        status="queued",
                        attempts=0,
                    )
                )
        return run.to_dict()

    def set_status(
        self,
        run_id: str,
        status: str,
        results: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> bool:
        """``running``, ``done`` or ``failed`` (with the results or error) unless the run ended
        already (recorded interrupted meanwhile, or a chunk failed it); returns whether it was
        written."""
        values: dict[str, Any] = {"status": status, "heartbeat": now()}
        if status in ("done", "failed"):
            values |= {"finished": now(), "results": results, "error": error}
        with self._session() as session:
            result = session.execute(
                update(Run)
                .where(Run.id == run_id, Run.status.in_(ACTIVE))
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            return bool(getattr(result, "rowcount", 0))

    # -- chunks ----------------------------------------------------------------------------

    def chunk(self, run_id: str, index: int) -> dict[str, Any] | None:
        """What a chunk's worker needs (the run's set, models and size, the chunk's images);
        None when the run is no longer queued or running."""
        with self._session() as session:
            run = session.get(Run, run_id)
            part = session.get(Chunk, (run_id, index))
            if run is None or part is None or run.status not in ACTIVE:
                return None
            return {
                "run_id": run_id,
                "chunk": index,
                "set_name": run.set_name,
                "models": list(run.models),
                "n_images": run.n_images,
                "start": part.start,
                "stop": part.stop,
            }

    @staticmethod
    def _locked_run(session: Any, run_id: str) -> Run | None:
        """The run's row, locked until the transaction ends (PostgreSQL; SQLite serialises
        writers anyway), if it is still queued or running."""
        run = session.scalars(select(Run).where(Run.id == run_id).with_for_update()).first()
        return run if run is not None and run.status in ACTIVE else None

    def start_chunk(self, run_id: str, index: int, worker: str) -> bool:
        """The chunk starts on ``worker`` (its attempts counted), the run is ``running``;
        False when the run is no longer active (the chunk must not run)."""
        with self._session() as session:
            run = self._locked_run(session, run_id)
            part = session.get(Chunk, (run_id, index))
            if run is None or part is None:
                return False
            run.status = "running"
            run.heartbeat = now()
            part.status = "running"
            part.worker = worker
            part.attempts = (part.attempts or 0) + 1
            part.started = now()
            part.finished = None
            return True

    def finish_chunk(self, run_id: str, index: int, result: dict[str, Any], merge: Merge) -> bool:
        """Record the chunk's ``result``; when it was the last chunk not done, ``merge`` every
        chunk's result (index order) into the run's, which ends ``done`` (or ``failed``) in
        the same transaction, and the chunks' results are dropped. False when the run is no
        longer active (nothing is written)."""
        with self._session() as session:
            run = self._locked_run(session, run_id)
            part = session.get(Chunk, (run_id, index))
            if run is None or part is None:
                return False
            part.status = "done"
            part.finished = now()
            part.result = result
            session.flush()
            left = session.scalar(
                select(func.count())
                .select_from(Chunk)
                .where(Chunk.run_id == run_id, Chunk.status != "done")
            )
            run.heartbeat = now()
            if left:
                return True
            parts = session.scalars(
                select(Chunk).where(Chunk.run_id == run_id).order_by(Chunk.number)
            ).all()
            status, results, error = merge([p.result or {} for p in parts])
            run.status, run.results, run.error, run.finished = status, results, error, now()
            for p in parts:
                p.result = None
            return True

    def chunks(self, run_id: str) -> list[dict[str, Any]]:
        """The run's chunks in index order: images, status, the worker that ran each last,
        attempts and times."""
        with self._session() as session:
            parts = session.scalars(
                select(Chunk).where(Chunk.run_id == run_id).order_by(Chunk.number)
            ).all()
            return [p.to_dict() for p in parts]

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
