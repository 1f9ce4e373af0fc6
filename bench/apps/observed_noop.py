"""Plain Celery's no-op task (bench.apps.celery_noop) in an app wrapped by Crisper.

With CRISPER_OBSERVE=true (the default) every run is recorded through Celery's signals;
with false the wrapper connects nothing and this is plain Celery. Run by
`celery -A bench.apps.observed_noop worker`.
"""

from __future__ import annotations

import os

from bench.apps import celery_noop, probes
from crisper import Crisper, Settings

app = celery_noop.make(os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/3"),
                       os.environ.get("BENCH_BROKER_PREFIX", ""),
                       os.environ.get("BENCH_QUEUE", "bench"))
crisper = Crisper("bench_observed", settings=Settings(), celery=app)
probes.install()
