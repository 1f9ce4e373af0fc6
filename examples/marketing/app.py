"""The marketing platform's Crisper app: its 41 job types in five queues, the shared e-mail
limit, the retry policy and the write-up's seven periodic schedules, all declared here.

    crisper --app marketing.app worker -Q email,ai          # (from examples/)
    crisper --app marketing.app worker -Q default,scraper
    crisper --app marketing.app worker -Q demo -c 1
    crisper --app marketing.app scheduler                   # timers, relay, and the schedules
    crisper --app marketing.app api --port 5555             # the dashboard, where Flower was

Configuration is the environment (services.Config): TEST_MODE (on unless 0), and
MARKETING_EMAIL_RATE, MARKETING_RETRY_* to scale limits and back-off.
"""

from __future__ import annotations

from crisper import Crisper, Settings
from marketing import ai_jobs, campaign_jobs, demo_jobs, email_jobs, scraper_jobs
from marketing.kit import Kit
from marketing.services import Config, Services

# The write-up's Celery beat schedule, as code schedules (UTC). The scheduler syncs them at
# start: added, changed or removed to match this list; `crisper schedules ls` shows them.
SCHEDULES = [
    ("process-scheduled-campaigns", "campaign.process_scheduled_campaigns", "* * * * *"),
    ("update-campaign-metrics", "campaign.update_campaign_metrics", "*/5 * * * *"),
    ("monitor-scraper-jobs", "scraper.monitor_scraper_jobs", "*/10 * * * *"),
    ("retry-failed-emails", "email.retry_failed_emails", "*/15 * * * *"),
    ("cleanup-old-task-results", "campaign.cleanup_old_task_results", "0 * * * *"),
    ("generate-daily-analytics", "campaign.generate_daily_analytics", "0 1 * * *"),
    ("cleanup-old-scraper-data", "scraper.cleanup_old_scraper_data", "0 3 * * *"),
]


def build(settings: Settings | None = None, config: Config | None = None) -> Crisper:
    """The app as workers, scheduler and API all import it (the same limits everywhere)."""
    app = Crisper("marketing", settings=settings)
    kit = Kit.build(app, Services.for_config(config or Config.from_env()))
    for module in (email_jobs, campaign_jobs, scraper_jobs, ai_jobs, demo_jobs):
        module.register(kit)
    for name, job_type, cron in SCHEDULES:
        app.schedule(name, job_type, cron, overlap="skip")  # never two runs at once
    return app


crisper = build()
