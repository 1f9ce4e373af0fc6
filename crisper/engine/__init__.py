"""Celery integration: the app factory, the task wrapper that runs jobs, and worker signals."""
