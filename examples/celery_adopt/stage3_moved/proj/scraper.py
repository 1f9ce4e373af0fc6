"""Scraper tasks."""

from proj.celery import app, crisper
from proj.marks import mark, marked


@crisper.job(autoretry_for=(ConnectionError,), retry_backoff=1, retry_backoff_max=2,
          retry_jitter=False, max_retries=2)
def fetch(url):
    if "flaky" in url and not marked(f"fetch-try {url}"):  # the first try is reset
        mark(f"fetch-try {url}")
        raise ConnectionError(f"connection to {url} reset")
    mark(f"fetch {url}")
    return f"<html>{url}</html>"


@app.task
def parse(html):
    mark(f"parse {len(html)}")
    return {"length": len(html)}


@crisper.job(priority=3)
def crawl(seed, depth=1):
    mark(f"crawl {seed} {depth}")
    return [f"{seed}/{i}" for i in range(depth)]
