"""Flow-control options and their pure arithmetic: rates, the GCRA reservation, job keys.

A rate limit is enforced as a generic cell rate algorithm (GCRA): one number per key, the
theoretical arrival time (TAT) of the next start. Every request reserves the next slot;
a request that may not start now learns how long to wait, and holds its slot meanwhile.
So N workers asking at once get N distinct slots, and nobody polls.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from crisper.errors import ConfigurationError

KeySpec = str | Callable[[dict[str, Any]], object]
UniqueSpec = bool | str | Sequence[str] | Callable[[dict[str, Any]], object] | None
_PERIODS = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "hour": 3600.0,
            "d": 86400.0, "day": 86400.0}
_RATE = re.compile(r"\s*(\d+)\s*/\s*(\d*(?:\.\d+)?)\s*([a-z]+)\s*")
MAX_KEY = 250
_LIMIT_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class RateLimit:
    """`limit` starts per `period` seconds, with up to `burst` starts at once after a lull."""

    limit: int
    period: float
    burst: int = 1
    # A named limit (crisper.rate_limit) is one bucket shared by every job type that uses it.
    name: str | None = None

    @property
    def interval(self) -> float:
        """Seconds between two starts at the steady rate."""
        return self.period / self.limit

    def __str__(self) -> str:
        return f"{self.limit}/{self.period:g}s (burst {self.burst})"


def parse_rate(text: str, burst: int | None = None) -> RateLimit:
    """'50/m', '10/s', '1000/h', '5/10s' -> RateLimit; ConfigurationError for anything else."""
    match = _RATE.fullmatch(text.lower())
    if not match or match.group(3) not in _PERIODS:
        raise ConfigurationError(
            f"rate limit {text!r} is not understood; "
            "write it as '50/m', '10/s', '1000/h' or '5/10s'"
        )
    limit = int(match.group(1))
    period = float(match.group(2) or 1) * _PERIODS[match.group(3)]
    if limit < 1 or period <= 0:
        raise ConfigurationError(f"rate limit {text!r} must allow at least one start per period")
    burst = 1 if burst is None else burst
    if not 1 <= burst <= limit:
        raise ConfigurationError(f"rate limit burst must be 1..{limit}, got {burst}")
    return RateLimit(limit, period, burst)


@dataclass(frozen=True)
class ConcurrencyLimit:
    """At most `limit` jobs running at once, shared by every job type that uses this name."""

    name: str
    limit: int


def check_limit_name(name: str) -> str:
    """A limit's name becomes part of a Redis key and of job rows: keep it plain."""
    if not isinstance(name, str) or not _LIMIT_NAME.fullmatch(name):
        raise ConfigurationError(
            f"limit name {name!r} must be 1-64 characters of a-z 0-9 _ . -, "
            "starting with a letter or digit")
    return name


def limit_scope(name: str) -> str:
    """The key prefix of a named limit: '@' keeps it apart from every job type's own keys."""
    return f"@{name}"


def gcra_tokens(tat: float, now: float, interval: float, burst: int) -> int:
    """How many starts the bucket would allow right now (0..burst), without reserving any."""
    ahead = max(0.0, tat - now) / interval
    return max(0, min(burst, math.floor(burst - ahead + 1e-9)))


def gcra_reserve(tat: float, now: float, interval: float, burst: int) -> tuple[float, float]:
    """Reserve the next slot: (the new TAT, seconds to wait before starting; 0 = start now).

    A start is allowed once `now >= tat - (burst - 1) * interval`; at a steady backlog
    the starts are exactly `interval` apart, and any window of `w` seconds holds at most
    `burst + w / interval` of them. The Lua script in bucket.py is this function.
    """
    tat = max(tat, now)
    wait = max(0.0, tat - (burst - 1) * interval - now)
    return tat + interval, wait


@dataclass(frozen=True)
class FlowOptions:
    """A job type's flow control: global rate limit, concurrency limit, uniqueness."""

    rate_limit: RateLimit | None = None
    rate_key: KeySpec | None = None
    concurrency: int | None = None
    concurrency_key: KeySpec | None = None
    unique: UniqueSpec = None
    # The name of a shared concurrency limit (crisper.concurrency_limit), if `concurrency` is one.
    concurrency_name: str | None = None

    @property
    def limited(self) -> bool:
        return self.rate_limit is not None or self.concurrency is not None

    def rate_scope(self, job_type: str) -> str:
        """The bucket's key prefix: the shared limit's name, or the job type's own."""
        name = self.rate_limit.name if self.rate_limit is not None else None
        return limit_scope(name) if name else job_type

    def concurrency_scope(self, job_type: str) -> str:
        return limit_scope(self.concurrency_name) if self.concurrency_name else job_type


def flow_options(func: Callable[..., Any], name: str, *, rate_limit: str | RateLimit | None = None,
                 burst: int | None = None, rate_key: KeySpec | None = None,
                 concurrency: int | ConcurrencyLimit | None = None,
                 concurrency_key: KeySpec | None = None,
                 unique: UniqueSpec = None) -> FlowOptions:
    """Validate flow options against the function's parameters, at decoration time."""
    params = [p for p in list(inspect.signature(func).parameters)[1:]]
    rate = parse_rate(rate_limit, burst) if isinstance(rate_limit, str) else rate_limit
    if isinstance(rate_limit, RateLimit) and burst is not None:
        raise ConfigurationError(
            f"job type {name!r}: burst belongs to the rate limit; give it to crisper.rate_limit()")
    concurrency_name = None
    if isinstance(concurrency, ConcurrencyLimit):
        concurrency_name, concurrency = concurrency.name, concurrency.limit
    if rate is None and (rate_key is not None or burst is not None):
        raise ConfigurationError(f"job type {name!r}: rate_key/burst need a rate_limit")
    if concurrency is not None and concurrency < 1:
        raise ConfigurationError(f"job type {name!r}: concurrency must be at least 1")
    if concurrency is None and concurrency_key is not None:
        raise ConfigurationError(f"job type {name!r}: concurrency_key needs concurrency=N")
    for label, spec in (("rate_key", rate_key), ("concurrency_key", concurrency_key)):
        if isinstance(spec, str):
            _check_names(name, label, [spec], params)
        elif spec is not None and not callable(spec):
            raise ConfigurationError(f"job type {name!r}: {label} must be a param name or callable")
    if isinstance(unique, str):
        _check_names(name, "unique", [unique], params)
    elif isinstance(unique, Sequence):
        _check_names(name, "unique", list(unique), params)
    elif unique is not None and not isinstance(unique, bool) and not callable(unique):
        raise ConfigurationError(
            f"job type {name!r}: unique must be True, param name(s) or a callable")
    return FlowOptions(rate, rate_key, concurrency, concurrency_key, unique or None,
                       concurrency_name)


def _check_names(job: str, label: str, names: list[str], params: list[str]) -> None:
    for n in names:
        if n not in params:
            raise ConfigurationError(
                f"job type {job!r}: {label} names {n!r}, which is not a parameter; "
                f"parameters: {', '.join(params) or 'none'}")


def _compute(spec: KeySpec, params: dict[str, Any]) -> str:
    value = params.get(spec) if isinstance(spec, str) else spec(params)
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def scoped(job_type: str, key: str) -> str:
    """A key scoped to its job type, hashed when too long for the column."""
    full = f"{job_type}:{key}"
    if len(full) <= MAX_KEY:
        return full
    return f"{job_type[:100]}:sha256:{hashlib.sha256(key.encode()).hexdigest()}"


def rate_key(options: FlowOptions, job_type: str, params: dict[str, Any]) -> str:
    """The bucket a job draws from: per job type (or shared limit), alone or with a key."""
    scope = options.rate_scope(job_type)
    if options.rate_key is None:
        return scope
    return scoped(scope, _compute(options.rate_key, params))


def concurrency_key(options: FlowOptions, job_type: str, params: dict[str, Any]) -> str | None:
    if options.concurrency is None:
        return None
    scope = options.concurrency_scope(job_type)
    if options.concurrency_key is None:
        return scope
    return scoped(scope, _compute(options.concurrency_key, params))


def unique_key(options: FlowOptions, job_type: str, params: dict[str, Any],
               given: str | None = None) -> str | None:
    """The key that admits one active job: given at submit, or computed from the params."""
    if given is not None:
        return scoped(job_type, given)
    spec = options.unique
    if spec is None or spec is False:
        return None
    if spec is True:
        return scoped(job_type, json.dumps(params, sort_keys=True, default=str))
    if isinstance(spec, str):
        return scoped(job_type, _compute(spec, params))
    if isinstance(spec, Sequence):
        return scoped(job_type, json.dumps({k: params.get(k) for k in spec}, sort_keys=True,
                                           default=str))
    return scoped(job_type, _compute(spec, params))
