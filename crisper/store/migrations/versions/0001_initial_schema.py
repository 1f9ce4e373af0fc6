"""Initial schema: jobs, job events, job logs, workers.

Revision ID: 0001
Revises:
Create Date: 2026-11-23 12:22:19.927928
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import crisper.store.models

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('crisper_jobs',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('type', sa.String(length=200), nullable=False),
    sa.Column('queue', sa.String(length=200), nullable=False),
    sa.Column('priority', sa.Integer(), server_default='0', nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('tenant', sa.String(length=200), server_default='default', nullable=False),
    sa.Column('params', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('result', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('error', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('tags', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('attempt', sa.Integer(), server_default='0', nullable=False),
    sa.Column('max_attempts', sa.Integer(), server_default='1', nullable=False),
    sa.Column('retry_policy', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('timeout', sa.Float(), nullable=True),
    sa.Column('idempotency_key', sa.String(length=300), nullable=True),
    sa.Column('progress_current', sa.Float(), nullable=True),
    sa.Column('progress_total', sa.Float(), nullable=True),
    sa.Column('progress_message', sa.Text(), nullable=True),
    sa.Column('lease_token', sa.Uuid(), nullable=True),
    sa.Column('lease_expires_at', crisper.store.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('worker', sa.String(length=300), nullable=True),
    sa.Column('task_id', sa.String(length=64), nullable=True),
    sa.Column('cancel_requested_at', crisper.store.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', crisper.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('run_at', crisper.store.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('queued_at', crisper.store.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('dispatched_at', crisper.store.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('started_at', crisper.store.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('finished_at', crisper.store.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('cancelled_at', crisper.store.models.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_crisper_jobs'))
    )
    with op.batch_alter_table('crisper_jobs', schema=None) as batch_op:
        batch_op.create_index('ix_crisper_jobs_dispatch', ['queue', 'dispatched_at'], unique=False, postgresql_where=sa.text("state = 'queued'"), sqlite_where=sa.text("state = 'queued'"))
        batch_op.create_index('ix_crisper_jobs_due', ['run_at'], unique=False, postgresql_where=sa.text("state IN ('scheduled', 'retrying')"), sqlite_where=sa.text("state IN ('scheduled', 'retrying')"))
        batch_op.create_index('ix_crisper_jobs_finished', ['finished_at'], unique=False)
        batch_op.create_index('ix_crisper_jobs_lease', ['lease_expires_at'], unique=False, postgresql_where=sa.text("state = 'running'"), sqlite_where=sa.text("state = 'running'"))
        batch_op.create_index('ix_crisper_jobs_queue_state', ['queue', 'state'], unique=False)
        batch_op.create_index('ix_crisper_jobs_state_id', ['state', 'id'], unique=False)
        batch_op.create_index('ix_crisper_jobs_tenant_id', ['tenant', 'id'], unique=False)
        batch_op.create_index('ix_crisper_jobs_tenant_idempotency_key', ['tenant', 'idempotency_key'], unique=True)
        batch_op.create_index('ix_crisper_jobs_type_id', ['type', 'id'], unique=False)

    op.create_table('crisper_workers',
    sa.Column('name', sa.String(length=300), nullable=False),
    sa.Column('host', sa.String(length=300), nullable=False),
    sa.Column('pid', sa.Integer(), nullable=False),
    sa.Column('queues', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('concurrency', sa.Integer(), nullable=False),
    sa.Column('started_at', crisper.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_heartbeat_at', crisper.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('stopped_at', crisper.store.models.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_crisper_workers'))
    )
    op.create_table('crisper_job_events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('job_id', sa.Uuid(), nullable=False),
    sa.Column('at', crisper.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('from_state', sa.String(length=16), nullable=True),
    sa.Column('to_state', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.String(length=64), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('worker', sa.String(length=300), nullable=True),
    sa.Column('detail', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.ForeignKeyConstraint(['job_id'], ['crisper_jobs.id'], name=op.f('fk_crisper_job_events_job_id'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_crisper_job_events'))
    )
    with op.batch_alter_table('crisper_job_events', schema=None) as batch_op:
        batch_op.create_index('ix_crisper_job_events_job_id_id', ['job_id', 'id'], unique=False)

    op.create_table('crisper_job_logs',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('job_id', sa.Uuid(), nullable=False),
    sa.Column('at', crisper.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('level', sa.String(length=10), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['crisper_jobs.id'], name=op.f('fk_crisper_job_logs_job_id'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_crisper_job_logs'))
    )
    with op.batch_alter_table('crisper_job_logs', schema=None) as batch_op:
        batch_op.create_index('ix_crisper_job_logs_job_id_id', ['job_id', 'id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('crisper_job_logs', schema=None) as batch_op:
        batch_op.drop_index('ix_crisper_job_logs_job_id_id')

    op.drop_table('crisper_job_logs')
    with op.batch_alter_table('crisper_job_events', schema=None) as batch_op:
        batch_op.drop_index('ix_crisper_job_events_job_id_id')

    op.drop_table('crisper_job_events')
    op.drop_table('crisper_workers')
    with op.batch_alter_table('crisper_jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_crisper_jobs_type_id')
        batch_op.drop_index('ix_crisper_jobs_tenant_idempotency_key')
        batch_op.drop_index('ix_crisper_jobs_tenant_id')
        batch_op.drop_index('ix_crisper_jobs_state_id')
        batch_op.drop_index('ix_crisper_jobs_queue_state')
        batch_op.drop_index('ix_crisper_jobs_lease', postgresql_where=sa.text("state = 'running'"), sqlite_where=sa.text("state = 'running'"))
        batch_op.drop_index('ix_crisper_jobs_finished')
        batch_op.drop_index('ix_crisper_jobs_due', postgresql_where=sa.text("state IN ('scheduled', 'retrying')"), sqlite_where=sa.text("state IN ('scheduled', 'retrying')"))
        batch_op.drop_index('ix_crisper_jobs_dispatch', postgresql_where=sa.text("state = 'queued'"), sqlite_where=sa.text("state = 'queued'"))

    op.drop_table('crisper_jobs')
