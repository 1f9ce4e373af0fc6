"""E-mail tasks."""

from proj.celery import app
from proj.marks import mark


@app.task
def send_welcome(user_id):
    mark(f"send_welcome {user_id}")
    return f"welcome sent to user {user_id}"


@app.task(ignore_result=False)
def send_digest(user_id, items):
    mark(f"send_digest {user_id}")
    return {"user": user_id, "items": len(items)}


@app.task(bind=True, max_retries=3, default_retry_delay=1)
def bounce_check(self, address):
    if self.request.retries == 0:  # the mail server answers "try later" the first time
        raise self.retry(countdown=1)
    mark(f"bounce_check {address}")
    return {"address": address, "bounced": False, "tries": self.request.retries + 1}
