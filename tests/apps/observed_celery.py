"""The observed test app for `celery -A tests.apps.observed_celery worker` (CRISPER_* env)."""

from crisper import Settings
from tests.apps.observed_tasks import build

app, crisper = build(Settings())
