"""The tables: jobs, their events and log lines, workers, queues, schedules, maintenance runs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    Uuid,
    text,
    true,
)
from sqlalchemy.dialects import postgresql

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every dialect (SQLite hands back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use UTC-aware datetimes")
        if value is not None and dialect.name == "sqlite":
            return value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


JSONB = JSON().with_variant(postgresql.JSONB(), "postgresql")
BIGID = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrements INTEGER only

_ACTIVE = "state IN ('held', 'scheduled', 'queued', 'running', 'retrying')"

# GIN indexes exist on PostgreSQL only; a SQLite database has none of these.
POSTGRESQL_ONLY_INDEXES = frozenset({"ix_crisper_jobs_tags_gin", "ix_crisper_jobs_metadata_gin"})


def tagged(column: str) -> str:
    """The tags index's predicate on `column` (SQL), which a tag filter repeats word for word
    (store/tags.py): the planner proves a partial index usable only from a condition it can
    match."""
    return f"{column} <> '[]'::jsonb"


jobs = Table(
    "crisper_jobs",
    metadata,
    Column("id", Uuid(), primary_key=True),
    Column("type", String(200), nullable=False),
    Column("queue", String(200), nullable=False),
    Column("priority", Integer, nullable=False, server_default="0"),
    Column("state", String(16), nullable=False),
    Column("tenant", String(200), nullable=False, server_default="default"),
    Column("params", JSONB, nullable=False),
    Column("result", JSONB),
    Column("error", JSONB),
    Column("tags", JSONB, nullable=False),
    Column("attempt", Integer, nullable=False, server_default="0"),
    Column("max_attempts", Integer, nullable=False, server_default="1"),
    Column("retry_policy", JSONB, nullable=False),
    Column("timeout", Float),
    Column("idempotency_key", String(300)),
    Column("progress_current", Float),
    Column("progress_total", Float),
    Column("progress_message", Text),
    # The lease: who holds the running attempt, until when, and the token that fences its writes.
    Column("lease_token", Uuid()),
    Column("lease_expires_at", UTCDateTime()),
    Column("worker", String(300)),
    Column("task_id", String(64)),
    Column("cancel_requested_at", UTCDateTime()),
    # Worker losses (migration 0006): attempts handed back unspent, unannounced losses (the
    # poison-pill count), an announced shutdown's mark, and whether a forced stop can work.
    Column("returned_attempts", Integer, nullable=False, server_default="0"),
    Column("rescues", Integer, nullable=False, server_default="0"),
    Column("interrupted_at", UTCDateTime()),
    Column("forcible", Boolean),
    # One timestamp per transition.
    Column("created_at", UTCDateTime(), nullable=False),
    Column("run_at", UTCDateTime()),
    Column("queued_at", UTCDateTime()),
    Column("dispatched_at", UTCDateTime()),
    Column("started_at", UTCDateTime()),
    Column("finished_at", UTCDateTime()),
    # Set when retention dropped params, result and logs but kept the record (per type).
    Column("payload_dropped_at", UTCDateTime()),
    Column("cancelled_at", UTCDateTime()),
    # Flow control (migration 0003): unique key while active, concurrency key, a held rate token.
    Column("unique_key", String(300)),
    Column("concurrency_key", String(300)),
    Column("rate_token_at", UTCDateTime()),
    Column("flow_wait", String(16)),  # why a deferred job waits: "rate" or "concurrency"
    # The schedule and fire time a job came from (one job per fire).
    Column("schedule_name", String(200)),
    Column("fire_time", UTCDateTime()),
    # Dispatch (migration 0004): why the last wake-up message could not be published, how many
    # tries failed in a row, and when the relay tries again (its back-off).
    Column("dispatch_error", Text),
    Column("dispatch_attempts", Integer, nullable=False, server_default="0"),
    Column("dispatch_after", UTCDateTime()),
    # Searchable metadata (migration 0007): a few string pairs, filtered by exact match.
    Column("metadata", JSONB),
    # Webhooks and batches (migration 0012): where the final record is POSTed, and the batch.
    Column("callback_url", String(2000)),
    Column("batch_id", Uuid()),
    # Indexes on columns most jobs leave NULL are partial (migration 0018): every row version
    # a job's moves write would otherwise add an entry to each.
    Index("ix_crisper_jobs_batch_id", "batch_id", postgresql_where=text("batch_id IS NOT NULL"),
          sqlite_where=text("batch_id IS NOT NULL")),
    # A submit's own hard time limit (migration 0013; `timeout` then holds its soft one). NULL:
    # the job type's limits apply. Set, the wake-up message carries both (time_limits.py).
    Column("hard_timeout", Float),
    # Where the row comes from (migration 0010): "crisper" (a job Crisper runs) or "observed"
    # (a plain Celery task recorded through Celery's signals; task_id is its Celery id).
    Column("source", String(16), nullable=False, server_default="crisper"),
    # Workflows (migration 0011): the workflow a node belongs to, its name there, and how many
    # of its parents have not finished yet (a waiting node is queued when this reaches 0).
    Column("workflow_id", Uuid()),
    Column("workflow_node", String(200)),
    Column("pending_parents", Integer),
    Index("ix_crisper_jobs_state_id", "state", "id"),
    Index("ix_crisper_jobs_type_id", "type", "id"),
    Index("ix_crisper_jobs_queue_state", "queue", "state"),
    Index("ix_crisper_jobs_queue_id", "queue", "id"),  # list by queue, newest first (0016)
    Index("ix_crisper_jobs_tenant_id", "tenant", "id"),
    Index("ix_crisper_jobs_tenant_idempotency_key", "tenant", "idempotency_key", unique=True,
          postgresql_where=text("idempotency_key IS NOT NULL"),
          sqlite_where=text("idempotency_key IS NOT NULL")),
    # Maintenance scans touch only the few rows in a waiting or running state.
    Index(
        "ix_crisper_jobs_due", "run_at",
        postgresql_where=text("state IN ('scheduled', 'retrying')"),
        sqlite_where=text("state IN ('scheduled', 'retrying')"),
    ),
    Index(
        "ix_crisper_jobs_lease", "lease_expires_at",
        postgresql_where=text("state = 'running'"), sqlite_where=text("state = 'running'"),
    ),
    Index(
        "ix_crisper_jobs_dispatch", "queue", "dispatched_at",
        postgresql_where=text("state = 'queued'"), sqlite_where=text("state = 'queued'"),
    ),
    # The claim's index and the relay's, ix_crisper_jobs_next_in_queue and
    # ix_crisper_jobs_unsent, follow the table: they need DESC.
    # Queued jobs by the time their message went out (those a broker restart may have lost).
    Index(
        "ix_crisper_jobs_dispatched_at", "dispatched_at",
        postgresql_where=text("state = 'queued'"), sqlite_where=text("state = 'queued'"),
    ),
    Index("ix_crisper_jobs_finished", "finished_at",
          postgresql_where=text("finished_at IS NOT NULL"),
          sqlite_where=text("finished_at IS NOT NULL")),
    Index("ix_crisper_jobs_workflow", "workflow_id",
          postgresql_where=text("workflow_id IS NOT NULL"),
          sqlite_where=text("workflow_id IS NOT NULL")),
    # At most one active job per unique key: the database settles concurrent submits.
    Index(
        "ix_crisper_jobs_unique_active", "tenant", "unique_key", unique=True,
        postgresql_where=text(_ACTIVE), sqlite_where=text(_ACTIVE),
    ),
    Index(
        "ix_crisper_jobs_concurrency", "concurrency_key", "state",
        postgresql_where=text("concurrency_key IS NOT NULL"),
        sqlite_where=text("concurrency_key IS NOT NULL"),
    ),
    # One row per observed Celery task: the observers' upserts meet on its task id.
    Index(
        "ix_crisper_jobs_observed_task", "task_id", unique=True,
        postgresql_where=text("source = 'observed'"), sqlite_where=text("source = 'observed'"),
    ),
    Index("ix_crisper_jobs_schedule_fire", "tenant", "schedule_name", "fire_time", unique=True,
          postgresql_where=text("schedule_name IS NOT NULL"),
          sqlite_where=text("schedule_name IS NOT NULL")),
    # Containment (@>) filters on tags and metadata; PostgreSQL only (SQLite scans):
    # POSTGRESQL_ONLY_INDEXES.
    # Only jobs that carry tags or metadata have entries (migration 0020).
    Index("ix_crisper_jobs_tags_gin", "tags", postgresql_using="gin",
          postgresql_ops={"tags": "jsonb_path_ops"},
          postgresql_where=text(tagged("tags"))).ddl_if(dialect="postgresql"),
    Index("ix_crisper_jobs_metadata_gin", "metadata", postgresql_using="gin",
          postgresql_ops={"metadata": "jsonb_path_ops"},
          postgresql_where=text("metadata IS NOT NULL")).ddl_if(dialect="postgresql"),
)

# The claim: a queue's queued jobs in the very order they start (store/attempts.claim_next),
# so that a claim reads the first entry it can lock, however long the backlog. (Ascending
# priority, scanned backwards, would give ids newest first: every claim would then sort
# all the queue's jobs of the top priority.)
Index("ix_crisper_jobs_next_in_queue", jobs.c.queue, jobs.c.priority.desc(), jobs.c.id,
      postgresql_where=text("state = 'queued'"), sqlite_where=text("state = 'queued'"))

# The relay: each queue's queued jobs with no wake-up out yet, in the claim's order
# (store/sweeps.undispatched). Jobs submitted while their queue takes wake-ups are inserted
# sent and never enter it.
_UNSENT = "state = 'queued' AND dispatched_at IS NULL AND source <> 'observed'"
Index("ix_crisper_jobs_unsent", jobs.c.queue, jobs.c.priority.desc(), jobs.c.id,
      postgresql_where=text(_UNSENT), sqlite_where=text(_UNSENT))

job_events = Table(
    "crisper_job_events",
    metadata,
    Column("id", BIGID, primary_key=True, autoincrement=True),
    # No foreign key (migration 0019): its check locked the job row each event's move had
    # just written; events are deleted with their job by retention (store/retention.py).
    Column("job_id", Uuid(), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    # A move: to_state, and from_state unless the job was created. A note: neither.
    Column("from_state", String(16)),
    Column("to_state", String(16)),
    Column("reason", String(64), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("worker", String(300)),
    Column("detail", JSONB),
    Index("ix_crisper_job_events_job_id_id", "job_id", "id"),
)

job_logs = Table(
    "crisper_job_logs",
    metadata,
    Column("id", BIGID, primary_key=True, autoincrement=True),
    Column("job_id", Uuid(), ForeignKey("crisper_jobs.id", ondelete="CASCADE"), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("level", String(10), nullable=False),
    Column("message", Text, nullable=False),
    Index("ix_crisper_job_logs_job_id_id", "job_id", "id"),
)

workers = Table(
    "crisper_workers",
    metadata,
    Column("name", String(300), primary_key=True),
    Column("host", String(300), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("queues", JSONB, nullable=False),
    Column("concurrency", Integer, nullable=False),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("last_heartbeat_at", UTCDateTime(), nullable=False),
    Column("stopped_at", UTCDateTime()),
)

api_keys = Table(
    "crisper_api_keys",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("tenant", String(200), nullable=False),
    Column("name", String(200)),
    # Only a hash of the secret is kept; the secret is shown once, when the key is created.
    Column("secret_hash", String(128), nullable=False, unique=True),
    Column("scopes", JSONB, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("revoked_at", UTCDateTime()),
    Column("last_used_at", UTCDateTime()),
)

queues = Table(
    "crisper_queues",
    metadata,
    Column("name", String(200), primary_key=True),
    # Paused queues are not dispatched; kept here so that the pause survives every restart.
    Column("paused_at", UTCDateTime()),
    Column("updated_at", UTCDateTime(), nullable=False),
)

schedules = Table(
    "crisper_schedules",
    metadata,
    # Names are the tenant's own: another tenant's schedule of the same name is not theirs
    # to see, and its existence must not stop them from using the name.
    Column("name", String(200), primary_key=True),
    Column("type", String(200), nullable=False),
    Column("params", JSONB, nullable=False),
    Column("queue", String(200)),
    Column("priority", Integer),
    Column("tenant", String(200), primary_key=True, server_default="default"),
    Column("cron", String(200), nullable=False),
    Column("timezone", String(64), nullable=False, server_default="UTC"),
    Column("enabled", Boolean, nullable=False, server_default=true()),
    Column("overlap", String(16), nullable=False, server_default="allow"),
    Column("catchup", String(16), nullable=False, server_default="none"),
    Column("catchup_window", Float, nullable=False, server_default="3600"),
    Column("jitter", Float, nullable=False, server_default="0"),
    # The fire a scheduler takes next; moving it forward is how one scheduler claims a fire.
    Column("next_fire_at", UTCDateTime()),
    Column("last_fire_at", UTCDateTime()),
    Column("last_job_id", Uuid()),
    Column("last_error", Text),
    Column("fires", Integer, nullable=False, server_default="0"),
    Column("skipped", Integer, nullable=False, server_default="0"),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    # "code": declared in the app (crisper.schedule, @job(schedule=)), kept in step by the
    # scheduler at start; "api": made from the CLI, API or Python service, kept as made.
    Column("source", String(8), nullable=False, server_default="api"),
    Index("ix_crisper_schedules_next_fire_at", "next_fire_at"),
)

maintenance_runs = Table(
    "crisper_maintenance_runs",
    metadata,
    Column("unit", String(64), primary_key=True),
    Column("every", Float, nullable=False),
    Column("last_run_at", UTCDateTime(), nullable=False),
    Column("last_count", Integer, nullable=False),
    Column("last_by", String(300)),
)

workflows = Table(
    "crisper_workflows",
    metadata,
    Column("id", Uuid(), primary_key=True),
    Column("tenant", String(200), nullable=False, server_default="default"),
    Column("name", String(200), nullable=False),
    Column("nodes", Integer, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("cancelled_at", UTCDateTime()),
    Column("retried_at", UTCDateTime()),
    # Set once every node has ended (migration 0014): the scheduler notes it and writes
    # `workflow.finished` in the same transaction; a resume clears it.
    Column("finished_at", UTCDateTime()),
    Index("ix_crisper_workflows_tenant_id", "tenant", "id"),
    Index("ix_crisper_workflows_unfinished", "id", postgresql_where=text("finished_at IS NULL"),
          sqlite_where=text("finished_at IS NULL")),
)

# One row per dependency: the child waits for the parent; `policy` says what the parent's
# failure does to it (fail, run, skip); `receives`: whether the child is given its result.
workflow_edges = Table(
    "crisper_workflow_edges",
    metadata,
    Column("parent_id", Uuid(), ForeignKey("crisper_jobs.id", ondelete="CASCADE"),
           primary_key=True),
    Column("child_id", Uuid(), ForeignKey("crisper_jobs.id", ondelete="CASCADE"),
           primary_key=True),
    Column("workflow_id", Uuid(), nullable=False),
    Column("policy", String(8), nullable=False),
    Column("receives", Boolean, nullable=False),
    Column("position", Integer, nullable=False),
    Index("ix_crisper_workflow_edges_child_id", "child_id"),
    Index("ix_crisper_workflow_edges_workflow_id", "workflow_id"),
)

# -- webhooks and batches (migration 0012; crisper/store/deliveries.py, batches.py) ----------

webhook_secrets = Table(
    "crisper_webhook_secrets",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("tenant", String(200), nullable=False),
    Column("secret", String(128), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    # Set when a newer secret replaced it: deliveries are signed with it too until then.
    Column("expires_at", UTCDateTime()),
    Index("ix_crisper_webhook_secrets_tenant", "tenant"),
)

subscriptions = Table(
    "crisper_subscriptions",
    metadata,
    Column("id", Uuid(), primary_key=True),
    Column("tenant", String(200), nullable=False),
    Column("url", String(2000), nullable=False),
    Column("events", JSONB, nullable=False),
    Column("type", String(200)),  # only jobs of this type, if set
    Column("queue", String(200)),  # only jobs on this queue, if set
    Column("created_at", UTCDateTime(), nullable=False),
    Index("ix_crisper_subscriptions_tenant", "tenant"),
)

deliveries = Table(
    "crisper_deliveries",
    metadata,
    Column("id", Uuid(), primary_key=True),
    Column("tenant", String(200), nullable=False),
    Column("event_id", Uuid(), nullable=False),
    Column("event", String(64), nullable=False),
    # A POST to `url`; or, with no url, a callback job to submit (`body` is its request).
    Column("url", String(2000)),
    Column("subscription_id", Uuid()),
    Column("job_id", Uuid()),
    Column("batch_id", Uuid()),
    Column("body", JSONB, nullable=False),
    Column("state", String(16), nullable=False),  # pending, delivered, failed
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_at", UTCDateTime(), nullable=False),
    Column("give_up_at", UTCDateTime()),  # set by its first try; redelivery clears it
    # The lease of the scheduler sending it now: another one takes it once it expires.
    Column("lease_token", Uuid()),
    Column("lease_until", UTCDateTime()),
    Column("last_status", Integer),
    Column("last_error", Text),
    Column("last_attempt_at", UTCDateTime()),
    Column("delivered_at", UTCDateTime()),
    Column("created_at", UTCDateTime(), nullable=False),
    Index("ix_crisper_deliveries_due", "next_at", postgresql_where=text("state = 'pending'"),
          sqlite_where=text("state = 'pending'")),
    Index("ix_crisper_deliveries_job_id", "job_id"),
    Index("ix_crisper_deliveries_batch_id", "batch_id"),
)

delivery_attempts = Table(
    "crisper_delivery_attempts",
    metadata,
    Column("id", BIGID, primary_key=True, autoincrement=True),
    Column("delivery_id", Uuid(), ForeignKey("crisper_deliveries.id", ondelete="CASCADE"),
           nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("status", Integer),
    Column("error", Text),
    Column("seconds", Float, nullable=False),
    Index("ix_crisper_delivery_attempts_delivery_id", "delivery_id"),
)

batches = Table(
    "crisper_batches",
    metadata,
    Column("id", Uuid(), primary_key=True),
    Column("tenant", String(200), nullable=False),
    Column("description", String(500)),
    Column("total", Integer, nullable=False),
    # Counted in the transaction that ends each job (a retried job is taken back out).
    Column("succeeded", Integer, nullable=False, server_default="0"),
    Column("failed", Integer, nullable=False, server_default="0"),
    Column("cancelled", Integer, nullable=False, server_default="0"),
    Column("callbacks", JSONB, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("finished_at", UTCDateTime()),
    # Once-only flags: set by a conditional UPDATE, so each callback fires once per batch.
    Column("success_fired_at", UTCDateTime()),
    Column("complete_fired_at", UTCDateTime()),
    Column("death_fired_at", UTCDateTime()),
    Index("ix_crisper_batches_tenant_id", "tenant", "id"),
)
