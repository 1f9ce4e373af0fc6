"""What the limits are doing now: tokens left, jobs running and jobs deferred, per limit."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import redis

from crisper.errors import CrisperError
from crisper.flow.bucket import RateBuckets
from crisper.flow.limits import FlowOptions, RateLimit
from crisper.store import flow as flow_sql

if TYPE_CHECKING:
    from crisper.settings import Settings
    from crisper.store import Store

# A job type as the view needs it: its name and its flow options.
Typed = tuple[str, FlowOptions]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LimitState:
    """One limit as operators see it. `shared` limits are named; the others belong to one type.

    `tokens` (rate limits without a key) is how many may start now; `running` (concurrency
    limits) counts every key; `deferred` is the jobs waiting for this limit right now.
    """

    name: str
    kind: str  # "rate" or "concurrency"
    shared: bool
    types: list[str]
    limit: int
    period_seconds: float | None
    burst: int | None
    keyed: bool
    tokens: int | None
    running: int | None
    deferred: int


class LimitView:
    """Reads the limits' state from Redis (rate buckets) and the store (running, deferred)."""

    def __init__(self, store: Store, settings: Settings,
                 types: Callable[[], Iterable[Typed]]) -> None:
        """`types`: each registered job type's name and flow options."""
        self.store = store
        self.types = types
        self.buckets = RateBuckets(settings.resolved_redis_url(), settings.broker_prefix)

    def states(self) -> list[LimitState]:
        """Every limit a registered job type uses: the shared ones once, by name."""
        rates: dict[str, list[Typed]] = {}
        slots: dict[str, list[Typed]] = {}
        for name, flow in self.types():
            if flow.rate_limit is not None:
                rates.setdefault(flow.rate_scope(name), []).append((name, flow))
            if flow.concurrency is not None:
                slots.setdefault(flow.concurrency_scope(name), []).append((name, flow))
        found = [self._rate(scope, types) for scope, types in sorted(rates.items())]
        found += [self._slots(scope, types) for scope, types in sorted(slots.items())]
        return found

    def _rate(self, scope: str, types: list[Typed]) -> LimitState:
        rate = types[0][1].rate_limit
        assert rate is not None
        keyed = any(flow.rate_key is not None for _, flow in types)
        names = sorted(name for name, _ in types)
        with self.store.read() as session:
            deferred = flow_sql.deferred(session, names, "rate")
        return LimitState(rate.name or types[0][0], "rate", rate.name is not None, names,
                          rate.limit, rate.period, rate.burst, keyed,
                          None if keyed else self._tokens(scope, rate), None, deferred)

    def _slots(self, scope: str, types: list[Typed]) -> LimitState:
        flow = types[0][1]
        assert flow.concurrency is not None
        keyed = any(f.concurrency_key is not None for _, f in types)
        names = sorted(name for name, _ in types)
        with self.store.read() as session:
            running = flow_sql.running_under(session, scope)
            deferred = flow_sql.deferred(session, names, "concurrency")
        return LimitState(flow.concurrency_name or types[0][0], "concurrency",
                          flow.concurrency_name is not None, names, flow.concurrency, None,
                          None, keyed, None, running, deferred)

    def _tokens(self, key: str, rate: RateLimit) -> int | None:
        """None when Redis cannot be asked: the view still answers, without this figure."""
        try:
            return self.buckets.tokens(key, rate)
        except (redis.RedisError, CrisperError) as exc:  # no Redis configured, or unreachable
            log.warning("rate bucket %s unreadable: %s", key, exc)
            return None
