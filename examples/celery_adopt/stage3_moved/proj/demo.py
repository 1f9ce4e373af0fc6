"""Demo tasks."""

import time

from proj.celery import app, crisper
from proj.marks import mark


@crisper.job
def add(x, y):
    time.sleep(0.05)
    mark(f"add {x} {y}")
    return x + y


@crisper.job
def slow(seconds):
    for _ in range(int(seconds * 10)):
        time.sleep(0.1)
    mark(f"slow {seconds}")
    return seconds


@app.task
def echo(value):
    mark(f"echo {value}")
    return value


@crisper.job(soft_time_limit=2)
def stuck(seconds):
    for _ in range(int(seconds * 10)):
        time.sleep(0.1)
    mark(f"stuck {seconds}")
    return seconds
