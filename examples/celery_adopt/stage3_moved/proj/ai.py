"""AI tasks."""

from proj.celery import app, crisper
from proj.marks import mark


@crisper.job(soft_time_limit=30)
def summarize(text):
    mark(f"summarize {text}")
    return text[:20]


@app.task
def classify(text, labels):
    mark(f"classify {text}")
    return labels[len(text) % len(labels)]


@app.task
def embed(text):
    mark(f"embed {text}")
    return [len(text), text.count(" ")]
