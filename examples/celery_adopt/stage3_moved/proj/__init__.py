"""A Celery project shaped like a real one: e-mail, campaign, scraper, AI and demo tasks."""

from proj import ai, campaigns, demo, emails, scraper  # noqa: F401 - registers the tasks
from proj.celery import app, crisper

__all__ = ["app", "crisper"]
