"""Celery's task options in Crisper's terms: pure functions, no broker and no database.

Every option Celery documents for `@app.task` is either mapped to a Crisper option, accepted
because Crisper already behaves that way, or refused with the replacement named. The table in
docs/migrating-from-celery.md is this module in prose.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from crisper.errors import ConfigurationError
from crisper.priorities import PRIORITY_MAX
from crisper.retry import Retry

# Celery's defaults, used when a task does not say.
CELERY_MAX_RETRIES = 3
CELERY_RETRY_DELAY = 180.0
CELERY_BACKOFF_MAX = 600.0
REDIS_PRIORITY_MAX = 9  # Kombu's Redis transport: 0..9, 0 first
AMQP_PRIORITY_MAX = 255  # RabbitMQ: 0..x-max-priority, the highest first

# Accepted as they are: Crisper already does this (or it has no meaning for a durable job).
ACCEPTED = frozenset({
    "acks_late", "acks_on_failure_or_timeout", "reject_on_worker_lost", "track_started",
    "ignore_result", "store_errors_even_if_ignored", "typing", "shared", "trail", "throws",
    "serializer", "lazy", "pydantic",
})
# Refused, each with what to use instead.
REFUSED = {
    "base": "put shared behaviour in the function or a helper it calls; a job has no Task class",
    "backend": "results are kept in Crisper's store; remove the option",
    "compression": "Crisper's wake-up messages carry ids only; remove the option",
    "expires": "pass expires= to apply_async(), where Crisper records and honours it",
    "on_failure": "read the job's outcome (events, the API) instead of a Task hook",
    "on_success": "read the job's outcome (events, the API) instead of a Task hook",
    "on_retry": "read the job's events instead of a Task hook",
    "after_return": "read the job's outcome instead of a Task hook",
    "rate_limit_per_worker": "rate_limit= (one limit across all workers)",
}


@dataclass(frozen=True)
class Mapped:
    """What a Celery-style declaration becomes: Crisper's job() options and the call style."""

    crisper: dict[str, Any] = field(default_factory=dict)
    bind: bool = False
    default_retry_delay: float = CELERY_RETRY_DELAY
    max_retries: int | None = CELERY_MAX_RETRIES


def crisper_priority(celery_priority: int | None, redis_broker: bool,
                     amqp_max: int = AMQP_PRIORITY_MAX, top: int = PRIORITY_MAX
                     ) -> int | None:
    """A Celery priority, in the meaning it has on the app's broker, as Crisper's (top first).

    On Redis 0 runs first and 9 last; on RabbitMQ the highest runs first, up to the queues'
    x-max-priority (`amqp_max`). Both are scaled onto 0..top.
    """
    if celery_priority is None:
        return None
    if isinstance(celery_priority, bool) or not isinstance(celery_priority, int):
        raise ConfigurationError(f"priority must be an integer, got {celery_priority!r}")
    if redis_broker:
        p = min(max(celery_priority, 0), REDIS_PRIORITY_MAX)
        return top - round(p * top / REDIS_PRIORITY_MAX)
    highest = max(int(amqp_max or AMQP_PRIORITY_MAX), 1)
    return round(min(max(celery_priority, 0), highest) * top / highest)


def map_options(name: str, options: Mapping[str, Any]) -> Mapped:
    """Celery's `@app.task` options as Crisper's job() options; refused ones raise."""
    opts = dict(options)
    for key in opts:
        if key in REFUSED:
            raise ConfigurationError(f"job type {name!r}: Celery's {key}= is not supported: "
                                     f"{REFUSED[key]}")
    if opts.get("serializer", "json") != "json":
        raise ConfigurationError(f"job type {name!r}: params are stored as JSON; "
                                 "serializer= must be 'json' (or left out)")
    bind = bool(opts.pop("bind", False))
    out: dict[str, Any] = {}
    timeout = _timeout(opts.pop("soft_time_limit", None), opts.pop("time_limit", None))
    if timeout is not None:
        out["timeout"] = timeout
    if "rate_limit" in opts and opts["rate_limit"] is not None:
        out["rate_limit"] = _rate(opts.pop("rate_limit"))
    opts.pop("rate_limit", None)
    delay = float(opts.pop("default_retry_delay", CELERY_RETRY_DELAY))
    max_retries = opts.pop("max_retries", CELERY_MAX_RETRIES)
    retry = _retry(opts, delay, max_retries)
    out["retry"] = retry
    unknown = sorted(k for k in opts if k not in ACCEPTED)
    if unknown:
        raise ConfigurationError(f"job type {name!r}: unknown option(s) {', '.join(unknown)}; "
                                 "see docs/migrating-from-celery.md for the mapping")
    return Mapped(out, bind, delay, max_retries)


def _timeout(soft: float | None, hard: float | None) -> Any:
    """Celery's soft/hard limits as Crisper's timeout: soft, or (soft, hard)."""
    if soft is None and hard is None:
        return None
    if soft is None:  # only a hard limit: the body gets no warning in Celery either
        assert hard is not None
        return (max(float(hard) - 1.0, float(hard) * 0.9), float(hard))
    if hard is None:
        return float(soft)
    return (float(soft), float(hard))


def _rate(text: Any) -> str:
    """Celery writes '10/m', '10/s', '10/h' or a bare number (per second)."""
    value = str(text).strip()
    return value if "/" in value else f"{value}/s"


def _retry(opts: dict[str, Any], delay: float, max_retries: int | None) -> Retry:
    """autoretry_for, retry_backoff(_max), retry_jitter, retry_kwargs and max_retries as one
    Retry. Only the listed exceptions (and `self.retry()`) retry, as in Celery."""
    from crisper.adoption.tasks import RetryLater

    on = tuple(opts.pop("autoretry_for", ()) or ())
    dont = tuple(opts.pop("dont_autoretry_for", ()) or ())
    kwargs = dict(opts.pop("retry_kwargs", None) or {})
    if "max_retries" in kwargs:
        max_retries = kwargs.pop("max_retries")
    countdown = float(kwargs.pop("countdown", delay))
    if kwargs:
        raise ConfigurationError(f"retry_kwargs: only max_retries and countdown are mapped, "
                                 f"not {sorted(kwargs)}")
    backoff = opts.pop("retry_backoff", False)
    backoff_max = float(opts.pop("retry_backoff_max", CELERY_BACKOFF_MAX))
    jitter = bool(opts.pop("retry_jitter", True))
    # max_retries=None is "retry for ever" in Celery; a durable job keeps a cap: a large one.
    attempts = 10_000 if max_retries is None else int(max_retries) + 1
    if backoff:
        base = 1.0 if backoff is True else float(backoff)
        return Retry(attempts=attempts, backoff=base, max_backoff=backoff_max, factor=2.0,
                     jitter=jitter, retry_on=(*on, RetryLater), dont_retry_on=dont)
    return Retry(attempts=attempts, backoff=countdown, max_backoff=max(countdown, 1.0),
                 factor=1.0, jitter=False, retry_on=(*on, RetryLater), dont_retry_on=dont)
