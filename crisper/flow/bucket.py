"""The global rate-limit bucket in Redis: one Lua script, so every worker shares one clock."""

from __future__ import annotations

from typing import Any

import redis

from crisper.errors import ConfigurationError
from crisper.flow.limits import RateLimit, gcra_tokens

# gcra_reserve() from limits.py, run atomically next to the data, on the server's clock.
_RESERVE = """
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat - (burst - 1) * interval - now
if wait < 0 then wait = 0 end
local new_tat = tat + interval
local ttl = math.ceil((new_tat - now) * 1000) + 1000
redis.call('SET', KEYS[1], string.format('%.6f', new_tat), 'PX', ttl)
return string.format('%.6f', wait)
"""


class RateBuckets:
    """Reserves start slots in per-key buckets shared by every worker of the app."""

    def __init__(self, url: str | None, prefix: str = "") -> None:
        self.url = url
        self.prefix = prefix
        self._client: redis.Redis | None = None
        self._script: Any = None

    def _reserve_script(self) -> Any:
        if self.url is None:
            raise ConfigurationError(
                "rate limits need a coordination Redis: set CRISPER_REDIS_URL (or use a Redis "
                "broker)")
        if self._client is None:
            self._client = redis.Redis.from_url(self.url, socket_connect_timeout=2,
                                                socket_timeout=2)
            self._script = self._client.register_script(_RESERVE)
        return self._script

    def reserve(self, key: str, rate: RateLimit) -> float:
        """Take the next slot for `key`: seconds until it comes (0: start now).

        Raises redis.RedisError when Redis cannot be reached.
        """
        script = self._reserve_script()
        wait = script(keys=[f"{self.prefix}crisper:rate:{key}"],
                      args=[repr(rate.interval), rate.burst])
        return float(wait)

    def tokens(self, key: str, rate: RateLimit) -> int:
        """Starts `key` would allow now, read without reserving (for the limits view).

        Raises redis.RedisError when Redis cannot be reached.
        """
        self._reserve_script()
        assert self._client is not None
        pipe = self._client.pipeline(transaction=True)
        pipe.get(f"{self.prefix}crisper:rate:{key}")
        pipe.time()
        raw, (secs, micros) = pipe.execute()
        tat = float(raw) if raw is not None else 0.0
        return gcra_tokens(tat, secs + micros / 1_000_000, rate.interval, rate.burst)

    def reset(self) -> None:
        """Forget the connection (after fork)."""
        self._client = None
        self._script = None
