"""Scraper job types (queue `scraper`, priority 3), and multi-source scraping as a workflow.

Each source is a job type of its own that only fetches and returns its leads. Scraping
several sources is a Crisper workflow: one node per source (fan-out), then
`merge_scraped_leads`, which receives every source's result (fan-in), removes duplicates
by e-mail address and stores the leads. A source that fails for good does not lose the others:
the merge's edges run on a parent's failure and report that source as missing.
"""

import csv
import time
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from crisper import Crisper, JobContext, JobState
from crisper.workflow_service import WorkflowView
from marketing.campaign_jobs import changed, save_figure
from marketing.kit import Kit
from marketing.services import SOURCES, PermanentError
from marketing.tables import leads, now

PREFIX = "scraper"
TIMEOUT = "6m"  # the write-up's scrape timeout
MERGE = f"{PREFIX}.merge_scraped_leads"


def multi_source_workflow(app: Crisper, query: str, location: str, sources: list[str],
                          max_results: int = 100, session: Session | None = None
                          ) -> WorkflowView:
    """Fan out one scrape per source, fan in to the merge; stored whole in one transaction."""
    unknown = sorted(set(sources) - set(SOURCES))
    if unknown or not sources:
        raise PermanentError(f"unknown or no sources: {unknown or sources}")
    wf = app.workflow(f"scrape {query} in {location}"[:200])
    fetched = [wf.add(f"{PREFIX}.scrape_{source}", {"query": query, "location": location,
                                                    "max_results": max_results},
                      name=source) for source in dict.fromkeys(sources)]
    wf.add(MERGE, name="merge", after=fetched, receive=True, on_failure="run")
    return wf.submit(session=session)


class ScraperJobs:
    def __init__(self, kit: Kit) -> None:
        self.kit, self.app, self.services = kit, kit.app, kit.services

    def _scrape(self, ctx: JobContext, source: str, query: str, location: str,
                max_results: int) -> dict[str, Any]:
        time.sleep(self.services.config.seconds_per_source)  # the real sites' answer time
        found = self.services.sources[source].search(query, location, max_results)
        ctx.progress(len(found), len(found), f"{len(found)} leads from {source}")
        return {"source": source, "leads": found}

    def scrape_craigslist(self, ctx: JobContext, query: str, location: str,
                          max_results: int = 100) -> dict[str, Any]:
        """Leads from Craigslist listings (offline: the fixed pool)."""
        return self._scrape(ctx, "craigslist", query, location, max_results)

    def scrape_google_maps(self, ctx: JobContext, query: str, location: str,
                           max_results: int = 100) -> dict[str, Any]:
        """Leads from Google Maps places."""
        return self._scrape(ctx, "google_maps", query, location, max_results)

    def scrape_linkedin(self, ctx: JobContext, query: str, location: str,
                        max_results: int = 100) -> dict[str, Any]:
        """Leads from LinkedIn company pages."""
        return self._scrape(ctx, "linkedin", query, location, max_results)

    def scrape_job_boards(self, ctx: JobContext, query: str, location: str,
                          max_results: int = 100) -> dict[str, Any]:
        """Leads from job boards (companies hiring)."""
        return self._scrape(ctx, "job_boards", query, location, max_results)

    def merge_scraped_leads(self, ctx: JobContext) -> dict[str, Any]:
        """The fan-in: every source's leads, one per e-mail address, stored."""
        per_source: dict[str, int | None] = {}
        merged: dict[str, dict[str, Any]] = {}
        for node, result in ctx.parents.items():
            per_source[node] = None if result is None else len(result["leads"])
            for lead in (result or {}).get("leads", []):
                key = lead["email"].strip().lower()
                known = merged.setdefault(key, {**lead, "email": key, "sources": []})
                known["sources"].append(lead["source"])
        created = self._store(list(merged.values()))
        missing = sorted(s for s, n in per_source.items() if n is None)
        return {"per_source": per_source, "unique": len(merged), "created": created,
                "missing": missing}

    def _store(self, found: list[dict[str, Any]]) -> int:
        """Insert the new leads; a known lead gains the sources that listed it again."""
        with self.app.store.transaction() as s:
            known = {r.email: r for r in s.execute(select(leads.c.id, leads.c.email,
                                                          leads.c.sources).where(
                leads.c.email.in_([f["email"] for f in found]))).all()}
            fresh = [f for f in found if f["email"] not in known]
            for f in found:
                if (row := known.get(f["email"])) is not None:
                    s.execute(update(leads).where(leads.c.id == row.id).values(
                        sources=sorted(set(row.sources) | set(f["sources"]))))
            if fresh:
                s.execute(leads.insert(), [
                    {"email": f["email"], "name": f["name"], "company": f["company"],
                     "city": f["city"], "sources": sorted(set(f["sources"])),
                     "created_at": now()} for f in fresh])
        return len(fresh)

    def scrape_multi_source(self, ctx: JobContext, query: str, location: str,
                            sources: list[str] | None = None,
                            max_results: int = 100) -> dict[str, Any]:
        """Start the multi-source workflow (what a recurring scrape's schedule runs)."""
        view = multi_source_workflow(self.app, query, location, sources or list(SOURCES),
                                     max_results)
        return {"workflow_id": str(view.id)}

    def schedule_recurring_scrape(self, ctx: JobContext, name: str, cron: str, query: str,
                                  location: str, sources: list[str] | None = None
                                  ) -> dict[str, Any]:
        """Make (or replace) a schedule that scrapes these sources on `cron`."""
        record = self.app.schedules.add(
            f"scrape-{name}", f"{PREFIX}.scrape_multi_source", cron, replace=True,
            params={"query": query, "location": location, "sources": sources}, overlap="skip")
        return {"schedule": record.name, "next_fire_at": str(record.next_fire_at)}

    def monitor_scraper_jobs(self, ctx: JobContext) -> dict[str, Any]:
        """Every 10 min: the scraper queue's jobs of the last 10 min by state, stored."""
        counts = self.app.count_jobs(queue="scraper",
                                     created_after=now() - timedelta(minutes=10))
        data = {state.value: n for state, n in counts.items() if n}
        if counts.get(JobState.FAILED):
            ctx.logger.warning("%d scraper jobs failed in 10 min", counts[JobState.FAILED])
        with self.app.store.transaction() as s:
            save_figure(s, "scraper_monitor", data)
        return data

    def cleanup_old_scraper_data(self, ctx: JobContext, days: int = 90) -> dict[str, Any]:
        """Daily at 3 AM: leads older than `days` that nobody analysed are dropped."""
        with self.app.store.transaction() as s:
            n = changed(s.execute(delete(leads).where(
                leads.c.created_at < now() - timedelta(days=days), leads.c.score.is_(None))))
        return {"deleted": n}

    def export_leads(self, ctx: JobContext, min_score: float = 0.0) -> dict[str, Any]:
        """Write the leads (scored at least `min_score`, or not scored) to a CSV file."""
        folder = self.services.config.files / "exports"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"leads-{uuid.UUID(str(ctx.job_id)).hex[:12]}.csv"
        with self.app.store.read() as s:
            rows = s.execute(select(leads).where(func.coalesce(leads.c.score, min_score)
                                                 >= min_score).order_by(leads.c.id)).all()
        with path.open("w", newline="") as f:
            out = csv.writer(f)
            out.writerow(["email", "name", "company", "city", "sources", "score"])
            for r in rows:
                out.writerow([r.email, r.name, r.company, r.city, " ".join(r.sources), r.score])
        return {"path": str(path), "leads": len(rows)}


def register(kit: Kit) -> None:
    jobs = ScraperJobs(kit)
    for f in (jobs.scrape_craigslist, jobs.scrape_google_maps, jobs.scrape_linkedin,
              jobs.scrape_job_boards, jobs.merge_scraped_leads, jobs.scrape_multi_source,
              jobs.schedule_recurring_scrape, jobs.monitor_scraper_jobs,
              jobs.cleanup_old_scraper_data, jobs.export_leads):
        kit.define(PREFIX, "scraper", f, TIMEOUT)
