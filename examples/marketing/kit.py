"""What every task module needs to declare its job types: the app, the services, the policies.

The five queues and their priorities are the write-up's (e-mail 10 ... demo 2, higher first):
a job type takes its queue's priority, so a worker serving several queues starts the most
urgent work first (docs/flow-control.md: priorities above 9 share the broker's top level).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from crisper import Crisper, Retry
from crisper.flow.limits import RateLimit
from marketing.services import Services, TransientError

# queue -> priority, as the write-up's Celery configuration had them
PRIORITIES = {"email": 10, "ai": 6, "default": 5, "scraper": 3, "demo": 2}


@dataclass(frozen=True)
class Kit:
    app: Crisper
    services: Services
    retry: Retry  # exponential back-off, transient errors only
    email_limit: RateLimit  # one 50/min bucket shared by every e-mail job type

    @classmethod
    def build(cls, app: Crisper, services: Services) -> Kit:
        config = services.config
        retry = Retry(attempts=config.retry_attempts, backoff=config.retry_backoff,
                      max_backoff=config.retry_max_backoff, factor=2.0, jitter=config.retry_jitter,
                      retry_on=(TransientError, ConnectionError, TimeoutError))
        return cls(app, services, retry, app.rate_limit("email", config.email_rate))

    def define(self, prefix: str, queue: str, func: Callable[..., Any], timeout: str,
               **options: Any) -> None:
        """Register `func` as the job type `prefix.func_name` on `queue` at its priority."""
        name = f"{prefix}.{func.__name__}"
        self.app.job(name=name, queue=queue, priority=PRIORITIES[queue], timeout=timeout,
                     retry=options.pop("retry", self.retry), **options)(func)
