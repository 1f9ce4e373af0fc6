"""Group commit: submits that arrive together in one process share one transaction.

Committing is what a submit waits for (PostgreSQL's WAL flush), and one commit can carry many
rows. So concurrent submits on an event loop are gathered for up to `window` seconds (or
`max_rows`), inserted with the store's multi-row statement (`store.jobs.create`, as
`submit_many` does), committed once, and only then is each waiter answered: every answer still
means "your row is committed durably" (synchronous_commit stays on). The workers' wake-up
goes out as any submit's does, on the service's waker thread (engine/waker.py), so a burst of
groups shares one marker check per queue and type and no group waits for the broker.

Rows are built and validated by the caller through `JobService.prepare_row` (the one copy of
that logic), so a bad request fails alone before it joins a group. A submit with an
idempotency or unique key needs to look its key up first: it goes the ordinary way
(`JobService.submit`, in a thread), where a replay or a conflict is answered to it alone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from crisper.errors import StoreUnavailable
from crisper.records import JobRecord
from crisper.store import jobs as job_sql
from crisper.store import utcnow

if TYPE_CHECKING:
    from crisper.service import JobService, SubmitRequest

log = logging.getLogger(__name__)
WINDOW_SECONDS = 0.002  # how long a group waits for company while another group commits
MAX_ROWS = 256  # rows per group at most (one statement each, pipelined)
FLIGHTS = 2  # groups committing at once: the next one gathers while one waits for its flush
Outcome = JobRecord | BaseException


@dataclass
class _Waiter:
    row: dict[str, Any]
    answer: asyncio.Future[JobRecord]


class GroupCommit:
    """Gathers the submits of one event loop into shared commits (see the module's text)."""

    def __init__(self, jobs: JobService, window: float = WINDOW_SECONDS,
                 max_rows: int = MAX_ROWS, flights: int = FLIGHTS) -> None:
        self.jobs = jobs
        self.window = window
        self.max_rows = max_rows
        self.flights = flights
        self._pending: list[_Waiter] = []
        self._flying = 0
        self._timer: asyncio.TimerHandle | None = None
        self._threads = ThreadPoolExecutor(flights, thread_name_prefix="crisper-group-commit")

    async def submit(self, request: SubmitRequest) -> JobRecord:
        """The job, once its row is committed; errors are this request's alone."""
        loop = asyncio.get_running_loop()
        row = self.jobs.prepare_row(request, utcnow())  # InvalidParams etc. raise here
        if row["idempotency_key"] or row["unique_key"]:
            return await loop.run_in_executor(None, self.jobs.submit, request)
        self.jobs.send_now([row])
        waiter = _Waiter(row, loop.create_future())
        self._pending.append(waiter)
        self._schedule(loop)
        return await waiter.answer

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        """Go now if nothing is committing (no one to share with) or the group is full;
        else wait the window for company; with every flight busy, a landing one takes them."""
        if self._flying >= self.flights:
            return
        if self._flying == 0 or len(self._pending) >= self.max_rows:
            self._launch(loop)
        elif self._timer is None:
            self._timer = loop.call_later(self.window, self._launch, loop)

    def _launch(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._pending or self._flying >= self.flights:
            return
        group, self._pending = self._pending[:self.max_rows], self._pending[self.max_rows:]
        self._flying += 1
        flight = loop.run_in_executor(self._threads, self._commit, loop, group)
        flight.add_done_callback(lambda done: self._landed(loop, done))

    def _landed(self, loop: asyncio.AbstractEventLoop, flight: asyncio.Future[None]) -> None:
        self._flying -= 1
        if not flight.cancelled() and flight.exception() is not None:
            log.error("a commit group failed unexpectedly", exc_info=flight.exception())
        if self._pending:  # they waited a whole commit already: no window for them
            self._launch(loop)

    def _commit(self, loop: asyncio.AbstractEventLoop, group: list[_Waiter]) -> None:
        """In a thread: insert and commit the group, answer its waiters, then have workers
        woken (by the waker's thread, so that the next group need not wait for the broker)."""
        try:
            outcomes = self._insert([w.row for w in group])
        except BaseException as exc:  # never leave a waiter hanging
            loop.call_soon_threadsafe(_answer, group, [exc] * len(group))
            raise
        loop.call_soon_threadsafe(_answer, group, outcomes)
        self.jobs.waker.wake([o for o, w in zip(outcomes, group, strict=True)
                              if isinstance(o, JobRecord) and w.row["dispatched_at"]])

    def _insert(self, rows: list[dict[str, Any]]) -> list[Outcome]:
        """One transaction for all; if the database refuses it for a reason other than being
        unreachable, each row is tried alone so that only the bad one fails."""
        try:
            with self.jobs.store.transaction() as session:
                job_sql.create(session, rows, utcnow())
        except StoreUnavailable as exc:
            return [exc] * len(rows)
        except Exception as exc:  # noqa: BLE001 - answered to its waiter, below or alone
            if len(rows) == 1:
                return [exc]
            return [self._insert([row])[0] for row in rows]
        return [JobRecord.from_new_row(row) for row in rows]

    def close(self) -> None:
        """Stop the threads once their work is done, and send the wake-ups still queued."""
        self._threads.shutdown(wait=True)
        self.jobs.waker.flush()


def _answer(group: Sequence[_Waiter], outcomes: Sequence[Outcome]) -> None:
    for waiter, outcome in zip(group, outcomes, strict=True):
        if waiter.answer.done():  # its client went away; the row is committed all the same
            continue
        if isinstance(outcome, JobRecord):
            waiter.answer.set_result(outcome)
        else:
            waiter.answer.set_exception(outcome)
