"""Campaign job types (queue `default`, priority 5): launch, batches, pause/resume, figures.

A campaign e-mails every lead once. Launching fans out into batches of recipients; each batch
writes its e-mail rows and their send jobs in one transaction, so a row never lacks its job.
Pausing cancels the campaign's e-mails not yet sent (found by their `campaign` metadata);
resuming sends the rest. Four of the write-up's beat tasks live here as code schedules.
"""

import uuid
from contextlib import suppress
from datetime import UTC, date, datetime, timedelta
from string import Template
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from crisper import InvalidTransition, JobContext, JobState, SubmitRequest
from marketing.email_jobs import new_email, send_request
from marketing.kit import Kit
from marketing.tables import campaigns, demos, emails, figures, leads, now

PREFIX = "campaign"
TIMEOUT = "15m"  # the write-up's campaign timeout
ACTIVE = (JobState.QUEUED, JobState.SCHEDULED, JobState.RETRYING)


def launch(session: Session, kit: Kit, campaign_id: uuid.UUID, *from_status: str) -> bool:
    """Move a campaign to running (only from `from_status`) and submit its sending, in the
    caller's transaction; False if it was in another status (a second launch does nothing)."""
    moved = changed(session.execute(update(campaigns).where(
        campaigns.c.id == campaign_id, campaigns.c.status.in_(from_status))
        .values(status="running")))
    if moved:
        kit.app.submit(f"{PREFIX}.send_campaign_emails", {"campaign_id": str(campaign_id)},
                       session=session, metadata={"campaign": str(campaign_id)})
    return bool(moved)


def changed(result: Any) -> int:
    """Rows an UPDATE or DELETE touched."""
    return int(result.rowcount)


def save_figure(session: Session, key: str, data: dict[str, Any]) -> None:
    session.execute(delete(figures).where(figures.c.key == key))
    session.execute(figures.insert().values(key=key, data=data, updated_at=now()))


class CampaignJobs:
    def __init__(self, kit: Kit) -> None:
        self.kit, self.app = kit, kit.app

    def launch_campaign_async(self, ctx: JobContext, campaign_id: str) -> dict[str, Any]:
        """Launch a draft or scheduled campaign now."""
        with self.app.store.transaction() as s:
            launched = launch(s, self.kit, uuid.UUID(campaign_id), "draft", "scheduled")
        return {"campaign_id": campaign_id, "launched": launched}

    def send_campaign_emails(self, ctx: JobContext, campaign_id: str,
                             batch_size: int = 50) -> dict[str, Any]:
        """Split the leads not yet e-mailed by this campaign into batches, one job each."""
        cid = uuid.UUID(campaign_id)
        with self.app.store.transaction() as s:
            done = select(emails.c.lead_id).where(emails.c.campaign_id == cid,
                                                  emails.c.lead_id.is_not(None))
            todo = s.scalars(select(leads.c.id).where(leads.c.id.not_in(done))
                             .order_by(leads.c.id)).all()
            batches = [todo[i:i + batch_size] for i in range(0, len(todo), batch_size)]
            rows = s.scalar(select(func.count()).select_from(emails)
                            .where(emails.c.campaign_id == cid))
            s.execute(update(campaigns).where(campaigns.c.id == cid)
                      .values(recipients=(rows or 0) + len(todo)))
            self.app.submit_many([SubmitRequest(f"{PREFIX}.process_campaign_batch",
                                                {"campaign_id": campaign_id, "lead_ids": b},
                                                metadata={"campaign": campaign_id})
                                  for b in batches], session=s)
        return {"recipients": len(todo), "batches": len(batches)}

    def process_campaign_batch(self, ctx: JobContext, campaign_id: str,
                               lead_ids: list[int]) -> dict[str, Any]:
        """Render the campaign for each lead of the batch: e-mail rows and their send jobs."""
        cid = uuid.UUID(campaign_id)
        with self.app.store.transaction() as s:
            campaign = s.execute(select(campaigns).where(campaigns.c.id == cid)).one()
            if campaign.status != "running":
                return {"skipped": campaign.status}
            people = s.execute(select(leads).where(leads.c.id.in_(lead_ids))).all()
            requests = []
            for lead in people:
                values = {"name": lead.name, "company": lead.company, "city": lead.city}
                eid = new_email(s, lead.email, Template(campaign.subject).safe_substitute(values),
                                Template(campaign.body).safe_substitute(values), cid, lead.id)
                requests.append(send_request(eid, cid))
            self.app.submit_many(requests, session=s)
        return {"emails": len(requests)}

    def pause_campaign_async(self, ctx: JobContext, campaign_id: str) -> dict[str, Any]:
        """Pause: no new batches, and the e-mails not yet sent are cancelled (kept queued)."""
        with self.app.store.transaction() as s:
            s.execute(update(campaigns).where(campaigns.c.id == uuid.UUID(campaign_id),
                                              campaigns.c.status == "running")
                      .values(status="paused"))
        cancelled = 0
        while page := self.app.list_jobs(metadata={"campaign": campaign_id}, state=ACTIVE,
                                         limit=500).items:
            for job in page:
                with suppress(InvalidTransition):  # it started meanwhile: it will be sent
                    self.app.jobs.cancel(job.id)
                    cancelled += 1
        return {"cancelled": cancelled}

    def resume_campaign_async(self, ctx: JobContext, campaign_id: str) -> dict[str, Any]:
        """Resume: the cancelled e-mails are sent again, then the leads not reached yet."""
        cid = uuid.UUID(campaign_id)
        with self.app.store.transaction() as s:
            rows = s.scalars(select(emails.c.id).where(emails.c.campaign_id == cid,
                                                       emails.c.status == "queued")).all()
            if launch(s, self.kit, cid, "paused"):
                self.app.submit_many([send_request(r, cid) for r in rows], session=s)
        return {"requeued": len(rows)}

    def process_scheduled_campaigns(self, ctx: JobContext) -> dict[str, Any]:
        """Every minute: launch the scheduled campaigns whose time has come."""
        with self.app.store.transaction() as s:
            due = s.scalars(select(campaigns.c.id).where(
                campaigns.c.status == "scheduled", campaigns.c.send_at <= now())
                .with_for_update(skip_locked=True)).all()
            launched = [str(c) for c in due if launch(s, self.kit, c, "scheduled")]
        return {"launched": launched}

    def update_campaign_metrics(self, ctx: JobContext) -> dict[str, Any]:
        """Every 5 min: recount each running campaign from its e-mails; complete the done."""
        with self.app.store.transaction() as s:
            counts = s.execute(select(emails.c.campaign_id, emails.c.status, func.count())
                               .where(emails.c.campaign_id.is_not(None))
                               .group_by(emails.c.campaign_id, emails.c.status)).all()
            per: dict[uuid.UUID, dict[str, int]] = {}
            for cid, status, n in counts:
                per.setdefault(cid, {})[status] = n
            running = s.execute(select(campaigns).where(campaigns.c.status == "running")).all()
            for c in running:
                got = per.get(c.id, {})
                sent = got.get("sent", 0) + got.get("rendered", 0)
                ended = sent + got.get("failed", 0) >= c.recipients and not got.get("queued")
                s.execute(update(campaigns).where(campaigns.c.id == c.id).values(
                    sent=sent, failed=got.get("failed", 0),
                    status="completed" if ended else "running"))
        return {"campaigns": len(running)}

    def cleanup_old_task_results(self, ctx: JobContext, days: int = 30) -> dict[str, Any]:
        """Hourly: drop the bodies of e-mails sent more than `days` ago. (Crisper's own job
        results need no task: each job type's retention prunes them.)"""
        with self.app.store.transaction() as s:
            n = changed(s.execute(update(emails).where(
                emails.c.sent_at < now() - timedelta(days=days), emails.c.body != "")
                .values(body="")))
        return {"emptied": n}

    def generate_daily_analytics(self, ctx: JobContext, day: str | None = None
                                 ) -> dict[str, Any]:
        """Daily at 1 AM: yesterday's e-mails by status, new leads and demos, stored."""
        first = date.fromisoformat(day) if day else datetime.now(UTC).date() - timedelta(1)
        start = datetime(first.year, first.month, first.day, tzinfo=UTC)
        end = start + timedelta(days=1)
        with self.app.store.transaction() as s:
            by_status: dict[str, int] = dict(s.execute(select(emails.c.status, func.count()).where(
                emails.c.created_at >= start, emails.c.created_at < end)
                .group_by(emails.c.status)).tuples().all())
            new_leads = s.scalar(select(func.count()).select_from(leads).where(
                leads.c.created_at >= start, leads.c.created_at < end))
            new_demos = s.scalar(select(func.count()).select_from(demos).where(
                demos.c.created_at >= start, demos.c.created_at < end))
            data = {"day": first.isoformat(), "emails": by_status, "leads": new_leads,
                    "demos": new_demos}
            save_figure(s, f"daily:{first.isoformat()}", data)
        return data


def register(kit: Kit) -> None:
    jobs = CampaignJobs(kit)
    for f in (jobs.launch_campaign_async, jobs.send_campaign_emails, jobs.process_campaign_batch,
              jobs.pause_campaign_async, jobs.resume_campaign_async,
              jobs.process_scheduled_campaigns, jobs.update_campaign_metrics,
              jobs.cleanup_old_task_results, jobs.generate_daily_analytics):
        kit.define(PREFIX, "default", f, TIMEOUT)
