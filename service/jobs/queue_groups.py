"""The travelling jobs posted to this replica: their futures, resolved once their jobs are gone.

A group is the jobs one ``submit_group`` of :class:`service.jobs.queue.ProcrastinateExecutor`
deferred together, in one place of this replica's bound. :meth:`Posted.watch` resolves its
future when procrastinate's table no longer holds any of its jobs as ``todo`` or ``doing`` (the
workers delete the jobs when they end), checked every ``poll_s``; ``finish`` (the place
released, the cleanup run) is called first. :meth:`Posted.cancel` (the queue closing) finishes
the groups still waiting and cancels their futures: their jobs stay queued for the other
replicas.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

import psycopg
from procrastinate.connector import BaseConnector
from procrastinate.exceptions import ProcrastinateException

from service.jobs.queue_schema import ACTIVE_QUERY

log = logging.getLogger("service.jobs.queue")  # the queue's log lines keep one logger name


@dataclass
class Group:
    """A group's procrastinate job ids not seen ended yet, its future, its ``finish``."""

    ids: set[int]
    future: Future[None]
    finish: Callable[[], None]
    kind: str


class Posted:
    """This replica's groups of travelling jobs that have not ended (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._groups: dict[int, Group] = {}

    def add(self, ids: Sequence[int], finish: Callable[[], None], kind: str) -> Future[None]:
        """The future of the group of procrastinate jobs ``ids``."""
        future: Future[None] = Future()
        with self._lock:
            self._groups[min(ids)] = Group(set(ids), future, finish, kind)
        return future

    async def watch(self, connector: BaseConnector, poll_s: float) -> None:
        """Resolve the futures of this replica's travelling jobs once their jobs are gone."""
        while True:
            await asyncio.sleep(poll_s)
            with self._lock:
                ids = sorted({i for group in self._groups.values() for i in group.ids})
            if not ids:
                continue
            try:
                rows = await connector.execute_query_all_async(ACTIVE_QUERY, ids=ids)
            except (ProcrastinateException, psycopg.Error):
                log.warning("job queue: the jobs' status could not be read", exc_info=True)
                continue
            active = {int(row["id"]) for row in rows}
            ended: list[Group] = []
            with self._lock:
                for key, group in list(self._groups.items()):
                    group.ids &= active
                    if not group.ids:
                        ended.append(self._groups.pop(key))
            for group in ended:
                try:
                    group.finish()
                finally:
                    group.future.set_result(None)

    def cancel(self) -> None:
        """Finish every group still waiting and cancel its future."""
        with self._lock:
            groups, self._groups = list(self._groups.values()), {}
        for group in groups:
            try:
                group.finish()
            finally:
                group.future.cancel()
