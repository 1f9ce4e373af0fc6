"""E-mail job types (queue `email`, priority 10), all under one shared 50/min limit.

The write-up's five tasks. Every message, whichever type sends it, draws from the one named
limit "email": single, campaign and test e-mails take a slot when their job starts; the batch
type (Crisper's built-in batch e-mail job) takes one per message. A 4xx answer is retried with
exponential back-off; a 5xx answer fails the e-mail for good. In TEST_MODE the message is
rendered and recorded (status `rendered`), never sent.
"""

import uuid
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from crisper import JobContext, SubmitRequest
from crisper.contrib.batch_email import SmtpServer, batch_email
from marketing.kit import PRIORITIES, Kit
from marketing.services import PermanentError, TransientError
from marketing.tables import campaigns, emails, now

PREFIX = "email"
TIMEOUT = "2m"  # the write-up's e-mail timeout
BATCH_SUBJECT = "$subject"
BATCH_TEXT = "Hello $name,\n\n$message\n\n-- FlipTech Pro\n"


def new_email(session: Session, to: str, subject: str, body: str,
              campaign_id: uuid.UUID | None = None, lead_id: int | None = None,
              email_id: uuid.UUID | None = None) -> uuid.UUID:
    """An e-mail row waiting for its job (submit the job in the same session)."""
    email_id = email_id or uuid.uuid4()
    session.execute(emails.insert().values(id=email_id, to=to, subject=subject, body=body,
                                           status="queued", campaign_id=campaign_id,
                                           lead_id=lead_id, created_at=now()))
    return email_id


def send_request(email_id: uuid.UUID, campaign_id: uuid.UUID | None) -> SubmitRequest:
    """The job that sends one e-mail row; a campaign's carry its id to find (and pause) them."""
    if campaign_id is None:
        return SubmitRequest(f"{PREFIX}.send_single_email", {"email_id": str(email_id)})
    return SubmitRequest(f"{PREFIX}.send_campaign_email", {"email_id": str(email_id)},
                         metadata={"campaign": str(campaign_id)})


class EmailJobs:
    def __init__(self, kit: Kit) -> None:
        self.kit, self.app, self.mailer = kit, kit.app, kit.services.mailer

    def _deliver(self, ctx: JobContext, email_id: str) -> dict[str, Any]:
        """Send one e-mail row once; record what happened on the row (and its campaign)."""
        eid = uuid.UUID(email_id)
        with self.app.store.read() as s:
            row = s.execute(select(emails).where(emails.c.id == eid)).one()
        if row.status in ("sent", "rendered"):  # a re-run after the send: never twice
            return {"email_id": email_id, "status": row.status, "again": True}
        try:
            status = self.mailer.send(row.to, row.subject, row.body)
        except PermanentError as exc:
            self._record(eid, row.campaign_id, "failed", str(exc))
            raise
        except TransientError as exc:
            last = ctx.attempt >= ctx.max_attempts
            self._record(eid, row.campaign_id, "failed" if last else "queued", str(exc))
            ctx.logger.warning("%s: attempt %d of %d: %s", row.to, ctx.attempt,
                               ctx.max_attempts, exc)
            raise
        self._record(eid, row.campaign_id, status, None)
        return {"email_id": email_id, "to": row.to, "status": status}

    def _record(self, eid: uuid.UUID, campaign_id: uuid.UUID | None, status: str,
                error: str | None) -> None:
        with self.app.store.transaction() as s:
            s.execute(update(emails).where(emails.c.id == eid).values(
                status=status, error=error, test_mode=status == "rendered",
                sent_at=now() if status in ("sent", "rendered") else None))
            if campaign_id is not None and status != "queued":
                column = "failed" if status == "failed" else "sent"
                s.execute(update(campaigns).where(campaigns.c.id == campaign_id)
                          .values({column: getattr(campaigns.c, column) + 1}))

    def send_single_email(self, ctx: JobContext, email_id: str) -> dict[str, Any]:
        """Send one transactional e-mail (its row made by the API with this job)."""
        return self._deliver(ctx, email_id)

    def send_campaign_email(self, ctx: JobContext, email_id: str) -> dict[str, Any]:
        """Send one campaign e-mail; the campaign's sent/failed counters follow."""
        return self._deliver(ctx, email_id)

    def send_test_email(self, ctx: JobContext, to: str) -> dict[str, Any]:
        """Send a fixed test message to `to` (checks the mail set-up end to end)."""
        eid = uuid.UUID(str(ctx.job_id))  # one row per job, whatever its attempts
        with self.app.store.transaction() as s:
            if s.scalar(select(emails.c.id).where(emails.c.id == eid)) is None:
                new_email(s, to, "FlipTech Pro test e-mail",
                          "If you can read this, e-mail from the platform works.", email_id=eid)
        return self._deliver(ctx, str(eid))

    def retry_failed_emails(self, ctx: JobContext, max_resends: int = 3) -> dict[str, Any]:
        """Every 15 min: e-mails that failed on transient errors, sent again (at most
        `max_resends` times each); a 5xx failure is not retried."""
        with self.app.store.transaction() as s:
            rows = s.execute(select(emails.c.id, emails.c.campaign_id).where(
                emails.c.status == "failed", emails.c.resends < max_resends,
                emails.c.error.like("SMTP 4%") | emails.c.error.like("SMTP no answer%"))
                .with_for_update(skip_locked=True)).all()
            for row in rows:
                s.execute(update(emails).where(emails.c.id == row.id).values(
                    status="queued", resends=emails.c.resends + 1))
            self.app.submit_many([send_request(r.id, r.campaign_id) for r in rows], session=s)
        ctx.logger.info("%d failed e-mails queued again", len(rows))
        return {"resent": len(rows)}


def register(kit: Kit) -> None:
    jobs, config = EmailJobs(kit), kit.services.config
    for func in (jobs.send_single_email, jobs.send_campaign_email, jobs.send_test_email):
        kit.define(PREFIX, "email", func, TIMEOUT, rate_limit=kit.email_limit)
    kit.define(PREFIX, "email", jobs.retry_failed_emails, TIMEOUT)
    # send_batch_emails: Crisper's built-in, one slot of the same limit per message
    batch_email(kit.app, name=f"{PREFIX}.send_batch_emails", queue="email",
                priority=PRIORITIES["email"],
                server=SmtpServer(config.smtp_host, config.smtp_port, timeout=20),
                sender=config.mail_from, subject=BATCH_SUBJECT, text=BATCH_TEXT,
                rate_limit=kit.email_limit, timeout="15m", attempts=config.retry_attempts,
                backoff=config.retry_backoff, max_backoff=config.retry_max_backoff,
                test_mode=config.test_mode)
