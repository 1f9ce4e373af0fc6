"""Campaign tasks."""

from proj.celery import app
from proj.marks import mark


@app.task(acks_late=True, time_limit=60, soft_time_limit=50)
def launch(campaign_id, audience="all"):
    mark(f"launch {campaign_id}")
    return f"campaign {campaign_id} launched to {audience}"


@app.task
def tally(campaign_id):
    mark(f"tally {campaign_id}")
    return {"campaign": campaign_id, "opens": campaign_id * 3}


@app.task(rate_limit="10/s")
def schedule_blast(campaign_id, at):
    mark(f"schedule_blast {campaign_id}")
    return f"blast {campaign_id} at {at}"
