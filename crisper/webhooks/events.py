"""Event names a subscription may ask for, and the job event each job move raises: pure."""

from __future__ import annotations

from crisper.states import JobState

JOB_SUCCEEDED = "job.succeeded"
JOB_FAILED = "job.failed"
JOB_CANCELLED = "job.cancelled"
JOB_RETRYING = "job.retrying"
JOB_POISONED = "job.poisoned"
WORKFLOW_FINISHED = "workflow.finished"  # emitted by workflows through store.deliveries.emit
BATCH_FINISHED = "batch.finished"
# The event of a job's own callback_url, and of a batch's callback webhooks.
JOB_CALLBACK = "job.callback"
BATCH_SUCCESS, BATCH_COMPLETE, BATCH_DEATH = "batch.success", "batch.complete", "batch.death"

SUBSCRIBABLE = (JOB_SUCCEEDED, JOB_FAILED, JOB_CANCELLED, JOB_RETRYING, JOB_POISONED,
                WORKFLOW_FINISHED, BATCH_FINISHED)


def job_event(target: JobState, reason: str) -> str | None:
    """The event a job's move to `target` raises, or None if it raises none.

    A job failed because it kept killing its workers raises job.poisoned (not job.failed):
    subscribe to both to hear of every failure.
    """
    if target is JobState.FAILED:
        return JOB_POISONED if reason == "poisoned" else JOB_FAILED
    return {JobState.SUCCEEDED: JOB_SUCCEEDED, JobState.CANCELLED: JOB_CANCELLED,
            JobState.RETRYING: JOB_RETRYING}.get(target)
