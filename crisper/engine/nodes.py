"""A workflow node's run, as the worker sees it: the results its parents passed it, and its
outcome written with its children's release (then their wake-ups)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from crisper.errors import CrisperError
from crisper.states import JobState
from crisper.store import Store, utcnow
from crisper.store import attempts as attempt_sql
from crisper.store import sweeps as sweep_sql
from crisper.store import workflows as workflow_sql
from crisper.store.sweeps import Dispatch

if TYPE_CHECKING:
    from crisper.engine.dispatcher import Dispatcher
    from crisper.engine.outcomes import Outcome
    from crisper.registry import Registry

log = logging.getLogger(__name__)
S = JobState
DELIVER_KEY = "workflow.deliver"  # a node's job metadata: how it receives (Node.deliver)
RETRYABLE = frozenset({"40P01", "40001"})  # deadlock, serialization failure: run it again


def node_inputs(store: Store, registry: Registry, job: attempt_sql.Claimed
                ) -> tuple[dict[str, Any], dict[str, Any]]:
    """What a node receives: its parents' results by node name (`ctx.parents`), and the
    params its delivery adds (Celery's rule: the first parameter gets the parent's result, or
    the list of them in order)."""
    with store.read() as session:
        results = workflow_sql.parent_results(session, job.id)
        how = workflow_sql.delivery(session, job.id, DELIVER_KEY)
    if how is None:
        return results, {}
    first = registry.get(job.type).parameters()[0]
    values = list(results.values())
    return results, {first: values if how == "list" else (values[0] if values else None)}


def write_node_outcome(store: Store, dispatcher: Dispatcher, job: attempt_sql.Claimed,
                       outcome: Outcome, worker: str, store_news: Callable[[Session], None]
                       ) -> bool:
    """The node's outcome and its children's release in one transaction; then their wake-ups.

    A deadlock between two releases (possible only in unusual graphs) runs the transaction
    again: the outcome is fenced, so running it twice cannot record it twice.
    """
    assert outcome.state is not None
    for tries in range(5, 0, -1):
        released: list[Dispatch] = []
        try:
            with store.transaction() as session:
                store_news(session)
                if outcome.state is S.QUEUED:  # handed back unspent: no child moves
                    return attempt_sql.rescue(session, job.id, job.lease_token, utcnow(),
                                              reason=outcome.reason, counted=False,
                                              worker=worker)
                done = attempt_sql.finish(
                    session, job.id, job.lease_token, outcome.state, utcnow(),
                    reason=outcome.reason, worker=worker, result=outcome.result,
                    error=outcome.error, retry_at=outcome.retry_at, released=released,
                    notifies=job.notifies)
            break
        except OperationalError as exc:
            code = getattr(exc.orig, "sqlstate", None)
            if code not in RETRYABLE or tries == 1:
                raise
            log.info("node %s: release ran into %s; writing it again", job.id, code)
    send_released(store, dispatcher, released)
    return done


def send_released(store: Store, dispatcher: Dispatcher, dispatches: Sequence[Dispatch]) -> None:
    """Wake workers for nodes a committed transaction queued, then mark them sent. Never
    raises: they are stored unsent, so the relay sends whatever this could not."""
    if not dispatches:
        return
    try:
        refusals = dispatcher.publish(dispatches)
        refused = {i for r in refusals for i in r.ids}
        with store.transaction() as session:
            sweep_sql.mark_dispatched(session, [d.id for d in dispatches if d.id not in refused],
                                      utcnow())
    except Exception as exc:  # noqa: BLE001 - committed already; the relay sends them
        if not isinstance(exc, CrisperError):
            log.warning("released %d node(s); wake-ups left to the relay: %s", len(dispatches),
                        exc)


