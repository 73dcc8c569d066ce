"""Volume segmentation jobs and their artifacts: ``VolumeStore``, a kind of ``JobStore``.

A volume job (table ``volume_jobs``) is leased like every job of ``service.benchmark.jobstore``
(owner, heartbeat, ``interrupted`` once its worker is gone, ``abandon`` at shutdown) and adds
``progress`` (slices ``done`` of ``total``), ``params`` and ``result`` (JSON, opaque to the
store) and ``expires``. Its artifacts (table ``volume_artifacts``: ``job_id``, ``name`` such as
``mask.nii.gz``, ``seg.dcm`` or ``fhir.json``, ``media_type``, ``content`` bytes, ``size``) live
in the database, so that every replica sharing it can answer for them.

Results and artifacts are patient-derived: a job expires ``ttl_s`` seconds after it was created
and, once it ended ``done`` or ``failed``, ``ttl_s`` after it finished; a queued or running job
does not expire. An expired job and its artifacts read as absent at once, and
``purge_expired()`` (each ``Heartbeat`` tick, through ``maintain()``) deletes them.

    VolumeStore(url_or_engine, owner=None, stale_after_s=STALE_AFTER_S)
    .create(job_id, params, ttl_s=DEFAULT_TTL_S, total=None, owner=None) -> dict   # queued
    .set_status(job_id, status, result=None, error=None) -> bool   # running | done | failed
    .set_progress(job_id, done, total) -> bool     # one UPDATE; False: no longer queued/running
    .get(job_id) -> dict | None                    # with "artifacts": [{name, media_type, size}]
    .list(limit=100) -> list[dict]                 # newest first
    .put_artifact(job_id, name, media_type, content)   # replaces one of the same name
    .get_artifact(job_id, name) -> Artifact | None
    .purge_expired() -> int                        # jobs deleted (with their artifacts)
    .heartbeat() / .mark_interrupted() / .abandon() -> int; .maintain(); .close()   # JobStore
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    ColumnElement,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    delete,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from service.benchmark.jobstore import ACTIVE, Base, JobStore, Leased, iso, now, utc

DEFAULT_TTL_S = 3600.0
ENDED = ("done", "failed")


class VolumeJob(Leased, Base):
    """One volume segmentation job: its params, progress, result and expiry."""

    __tablename__ = "volume_jobs"

    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    progress_done: Mapped[int] = mapped_column(Integer, default=0)
    progress_total: Mapped[int | None] = mapped_column(Integer, nullable=True)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    expires: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)

    def to_dict(self, stale_before: dt.datetime | None = None) -> dict[str, Any]:
        lost = stale_before is not None and self.lapsed(stale_before)
        return {
            "id": self.id,
            "status": "interrupted" if lost else self.status,
            "progress": {"done": self.progress_done or 0, "total": self.progress_total},
            "params": self.params,
            "result": self.result,
            "error": JobStore.lost_error if lost else self.error,
            "created": utc(self.created).isoformat(),
            "finished": iso(self.finished),
            "expires": utc(self.expires).isoformat(),
        }


class VolumeArtifact(Base):
    """A file of a job's result, kept in the database."""

    __tablename__ = "volume_artifacts"

    job_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("volume_jobs.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    media_type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    content: Mapped[bytes] = mapped_column(LargeBinary)
    created: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True)
class Artifact:
    job_id: str
    name: str
    media_type: str
    content: bytes
    size: int


class VolumeStore(JobStore[VolumeJob]):
    """Volume jobs, their progress and artifacts; every method opens and closes its own
    session."""

    model = VolumeJob
    tables: ClassVar[tuple[str, ...]] = (VolumeJob.__tablename__, VolumeArtifact.__tablename__)

    @staticmethod
    def _kept() -> ColumnElement[bool]:
        """Not expired: still queued or running, or its expiry is ahead."""
        return or_(VolumeJob.status.in_(ACTIVE), VolumeJob.expires > now())

    def create(
        self,
        job_id: str,
        params: dict[str, Any],
        ttl_s: float = DEFAULT_TTL_S,
        total: int | None = None,
        owner: str | None = None,
    ) -> dict[str, Any]:
        """A queued job leased by this owner (``owner``: ``QUEUE_OWNER`` for a job that
        travels), expiring ``ttl_s`` from now (and ``ttl_s`` after it ends)."""
        created = now()
        job = VolumeJob(
            id=job_id,
            status="queued",
            params=params,
            progress_done=0,
            progress_total=total,
            created=created,
            owner=owner or self.owner,
            heartbeat=created,
            expires=created + dt.timedelta(seconds=ttl_s),
        )
        with self._session() as session:
            session.add(job)
        return job.to_dict() | {"artifacts": []}

    def set_status(
        self,
        job_id: str,
        status: str,
        result: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> bool:
        """``running``, or ``done``/``failed`` with the result or error: then the job expires
        its ``ttl_s`` after now. Nothing is written to a job no longer queued or running
        (recorded interrupted meanwhile): returns whether it was."""
        with self._session() as session:
            job = session.get(VolumeJob, job_id, with_for_update=True)
            if job is None or job.status not in ACTIVE:
                return False
            job.status = status
            job.heartbeat = now()
            if status in ENDED:
                ttl = utc(job.expires) - utc(job.created)
                job.finished = now()
                job.expires = job.finished + ttl
                job.result = result
                job.error = error
            return True

    def set_progress(self, job_id: str, done: int, total: int | None) -> bool:
        """Slices ``done`` of ``total`` (one UPDATE, which also renews the lease). False when
        the job is no longer queued or running (interrupted, purged): its worker may stop."""
        with self._session() as session:
            result = session.execute(
                update(VolumeJob)
                .where(VolumeJob.id == job_id, VolumeJob.status.in_(ACTIVE))
                .values(progress_done=done, progress_total=total, heartbeat=now())
                .execution_options(synchronize_session=False)
            )
            return bool(getattr(result, "rowcount", 0))

    def _artifact_infos(self, session: Session, job_ids: list[str]) -> dict[str, list[Any]]:
        rows = session.execute(
            select(
                VolumeArtifact.job_id,
                VolumeArtifact.name,
                VolumeArtifact.media_type,
                VolumeArtifact.size,
            )
            .where(VolumeArtifact.job_id.in_(job_ids))
            .order_by(VolumeArtifact.job_id, VolumeArtifact.name)
        ).all()
        infos: dict[str, list[Any]] = defaultdict(list)
        for job_id, name, media_type, size in rows:
            infos[job_id].append({"name": name, "media_type": media_type, "size": size})
        return infos

    def get(self, job_id: str) -> dict[str, Any] | None:
        """The job (None once expired), its row first recorded ``interrupted`` if its lease
        lapsed, with its artifacts' names, media types and sizes."""
        with self._session() as session:
            job = session.get(VolumeJob, job_id)
            if job is None:
                return None
            self._settle(session, [job])
            if job.status not in ACTIVE and utc(job.expires) <= now():
                return None
            infos = self._artifact_infos(session, [job_id])
            return job.to_dict(self._stale_before()) | {"artifacts": infos[job_id]}

    def list(self, limit: int = 100) -> list[dict[str, Any]]:
        """Unexpired jobs, newest first; lapsed ones among them are recorded ``interrupted``."""
        with self._session() as session:
            jobs = session.scalars(
                select(VolumeJob)
                .where(self._kept())
                .order_by(VolumeJob.created.desc())
                .limit(limit)
            ).all()
            self._settle(session, jobs)
            jobs = [j for j in jobs if j.status in ACTIVE or utc(j.expires) > now()]
            infos = self._artifact_infos(session, [job.id for job in jobs])
            stale_before = self._stale_before()
            return [job.to_dict(stale_before) | {"artifacts": infos[job.id]} for job in jobs]

    def put_artifact(self, job_id: str, name: str, media_type: str, content: bytes) -> None:
        """Store (or replace) the artifact ``name`` of a job; KeyError when there is no such
        job."""
        with self._session() as session:
            if session.get(VolumeJob, job_id) is None:
                raise KeyError(job_id)
            session.merge(
                VolumeArtifact(
                    job_id=job_id,
                    name=name,
                    media_type=media_type,
                    size=len(content),
                    content=bytes(content),
                    created=now(),
                )
            )

    def get_artifact(self, job_id: str, name: str) -> Artifact | None:
        """The artifact, None when absent or its job expired."""
        with self._session() as session:
            row = session.execute(
                select(VolumeArtifact)
                .join(VolumeJob, VolumeJob.id == VolumeArtifact.job_id)
                .where(
                    VolumeArtifact.job_id == job_id,
                    VolumeArtifact.name == name,
                    self._kept(),
                )
            ).scalar_one_or_none()
            if row is None:
                return None
            return Artifact(row.job_id, row.name, row.media_type, bytes(row.content), row.size)

    def purge_expired(self) -> int:
        """Delete the expired jobs that are no longer queued or running, and their artifacts;
        returns how many jobs."""
        with self._session() as session:
            ids = list(session.scalars(select(VolumeJob.id).where(~self._kept())))
            if not ids:
                return 0
            session.execute(
                delete(VolumeArtifact)
                .where(VolumeArtifact.job_id.in_(ids))
                .execution_options(synchronize_session=False)
            )
            result = session.execute(
                delete(VolumeJob)
                .where(VolumeJob.id.in_(ids), ~self._kept())
                .execution_options(synchronize_session=False)
            )
            return int(getattr(result, "rowcount", 0) or 0)

    def housekeeping(self) -> None:
        self.purge_expired()
