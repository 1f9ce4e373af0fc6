"""Ended workflows are announced: `workflow.finished` to the tenant's subscribers, once per end.

A workflow's status is counted from its nodes on read (docs/decisions.md); its end is noted
by the scheduler, which writes the event into the outbox in the same transaction, so it is
sent like every other delivery (docs/webhooks.md).
"""

from __future__ import annotations

from datetime import datetime

from crisper.store import Store
from crisper.store import deliveries as outbox
from crisper.store import workflows as workflow_sql
from crisper.webhook_events import WORKFLOW_FINISHED
from crisper.workflows import status


def announce_finished(store: Store, at: datetime) -> int:
    """Note every workflow that has ended since the last tick; answer how many."""
    with store.transaction() as session:
        ended = workflow_sql.mark_finished(session, at)
        counts = workflow_sql.state_counts(session, [w.id for w in ended]) if ended else {}
        for workflow in ended:
            nodes = counts.get(workflow.id, {})
            outbox.emit(session, workflow.tenant, WORKFLOW_FINISHED, {
                "id": str(workflow.id), "name": workflow.name,
                "status": status(nodes, workflow.cancelled_at is not None), "nodes": nodes,
            }, at)
    return len(ended)
