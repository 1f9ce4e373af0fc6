"""The probe app's Celery app, for starting a worker the plain Celery way (`celery -A`)."""

from tests.apps.probe import crisper

app = crisper.celery
