"""The Celery app: broker and result backend from the environment, one queue per area."""

import os

from celery import Celery

from crisper import Crisper

prefix = os.environ.get("PROJ_KEY_PREFIX", "")
app = Celery(
    "proj",
    broker=os.environ.get("PROJ_BROKER_URL", "redis://127.0.0.1:6379/0"),
    backend=os.environ.get("PROJ_RESULT_BACKEND", "redis://127.0.0.1:6379/0"),
)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_default_queue="general",
    task_routes={
        "proj.emails.*": {"queue": "mail"},
        "proj.campaigns.*": {"queue": "campaigns"},
        "proj.scraper.*": {"queue": "scrape"},
        "proj.ai.*": {"queue": "ai"},
    },
    broker_transport_options={"global_keyprefix": prefix},
    result_backend_transport_options={"global_keyprefix": prefix},
    worker_prefetch_multiplier=1,
    beat_schedule={
        "nightly tally": {"task": "proj.campaigns.tally", "schedule": 3600.0, "args": (0,)},
        "scrape the front page": {"task": "proj.scraper.fetch", "schedule": 300.0,
                                  "args": ("https://example.com/",)},
    },
)

crisper = Crisper("proj", celery=app)
