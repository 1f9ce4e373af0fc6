"""The queue service: list queues with their figures, and pause or resume them durably."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from crisper.errors import InvalidRequest
from crisper.names import queue_problem
from crisper.store import queues as queue_sql
from crisper.store import utcnow
from crisper.store.queues import QueueRecord

if TYPE_CHECKING:
    from crisper.store import Store


class QueueService:
    """Paused queues are not dispatched; running jobs finish; the pause survives restarts."""

    def __init__(self, store: Store, known: Callable[[], Iterable[str]]) -> None:
        """`known`: the queues the job types name (listed even before their first job)."""
        self.store = store
        self.known = known

    def list_queues(self) -> list[QueueRecord]:
        known = set(self.known())
        with self.store.read() as session:
            return queue_sql.list_queues(session, known)

    def get(self, name: str) -> QueueRecord:
        with self.store.read() as session:
            found = [q for q in queue_sql.list_queues(session, [name]) if q.name == name]
        return found[0]

    def pause(self, name: str) -> QueueRecord:
        _check(name)
        with self.store.transaction() as session:
            queue_sql.set_paused(session, name, True, utcnow())
        return self.get(name)

    def resume(self, name: str) -> QueueRecord:
        """Unpause; the relay then sends the wake-ups the pause held back."""
        _check(name)
        with self.store.transaction() as session:
            queue_sql.set_paused(session, name, False, utcnow())
            queue_sql.forget_dispatch(session, [name])
        return self.get(name)


def _check(name: str) -> None:
    problem = queue_problem(name)
    if problem is not None:
        raise InvalidRequest("name", problem)
