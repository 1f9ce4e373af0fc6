"""The project's callers, as its web views and scripts call the tasks. They never change:
the same code runs against the plain app, the wrapped one and the one with tasks moved."""

from celery.result import AsyncResult
from proj import ai, app, campaigns, demo, emails, scraper


def signup(user_id):
    return emails.send_welcome.delay(user_id)


def weekly_digest(user_id):
    return emails.send_digest.delay(user_id, ["a", "b", "c"]).get(timeout=60)


def check_bounce(address):
    return emails.bounce_check.apply_async(args=(address,))


def launch_campaign(campaign_id):
    return campaigns.launch.apply_async((campaign_id,), {"audience": "beta"}, countdown=2)


def campaign_report(campaign_id):
    return campaigns.tally.delay(campaign_id).get(timeout=60)


def scrape(url):
    return scraper.fetch.delay(url)


def crawl_site(seed):
    return scraper.crawl.apply_async((seed,), {"depth": 2}, priority=0)


def summarize(text):
    return ai.summarize.s(text).delay()


def classify(text):
    return ai.classify.delay(text, ["spam", "ham"]).get(timeout=60)


def add(x, y):
    return demo.add.delay(x, y)


def start_slow(seconds):
    return demo.slow.delay(seconds)


def start_stuck(seconds):
    return demo.stuck.delay(seconds)


def status(task_id):
    """What the status page shows for a task id kept from earlier."""
    result = AsyncResult(task_id, app=app)
    return result.state, (result.result if result.ready() else None)
