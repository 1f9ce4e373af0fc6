"""The queue service: list queues with their figures, and pause or resume them durably."""

from __future__ import annotations

from typing import TYPE_CHECKING

from crisper.errors import InvalidRequest
from crisper.names import queue_problem
from crisper.store import queues as queue_sql
from crisper.store import utcnow
from crisper.store.queues import QueueRecord

if TYPE_CHECKING:
    from crisper.app import Crisper


class QueueService:
    """Paused queues are not dispatched; running jobs finish; the pause survives restarts."""

    def __init__(self, crisper: Crisper) -> None:
        self.crisper = crisper

    def list_queues(self) -> list[QueueRecord]:
        known = {jt.options.queue for jt in self.crisper.registry}
        with self.crisper.store.read() as session:
            return queue_sql.list_queues(session, known)

    def get(self, name: str) -> QueueRecord:
        with self.crisper.store.read() as session:
            found = [q for q in queue_sql.list_queues(session, [name]) if q.name == name]
        return found[0]

    def pause(self, name: str) -> QueueRecord:
        _check(name)
        with self.crisper.store.transaction() as session:
            queue_sql.set_paused(session, name, True, utcnow())
        return self.get(name)

    def resume(self, name: str) -> QueueRecord:
        """Unpause; the relay then sends the wake-ups the pause held back."""
        _check(name)
        with self.crisper.store.transaction() as session:
            queue_sql.set_paused(session, name, False, utcnow())
            queue_sql.forget_dispatch(session, [name])
        return self.get(name)


def _check(name: str) -> None:
    problem = queue_problem(name)
    if problem is not None:
        raise InvalidRequest("name", problem)
