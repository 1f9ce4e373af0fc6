"""A Celery project shaped like a real one: e-mail, campaign, scraper, AI and demo tasks."""

from proj.celery import app, crisper

from proj import ai, campaigns, demo, emails, scraper  # noqa: E402, F401 - register the tasks

__all__ = ["app", "crisper"]
