"""Rate-limit arithmetic, option validation and job keys: pure, with parameter tables."""

from __future__ import annotations

import pytest

from crisper import ConfigurationError
from crisper.flow.limits import (
    FlowOptions,
    RateLimit,
    concurrency_key,
    flow_options,
    gcra_reserve,
    parse_rate,
    rate_key,
    unique_key,
)


@pytest.mark.parametrize(("text", "limit", "period"), [
    ("50/m", 50, 60.0), ("10/s", 10, 1.0), ("1000/h", 1000, 3600.0), ("5/10s", 5, 10.0),
    ("3 / min", 3, 60.0), ("2/d", 2, 86400.0), ("7/1.5m", 7, 90.0),
])
def test_rates_parse(text: str, limit: int, period: float) -> None:
    assert parse_rate(text) == RateLimit(limit, period, 1)


@pytest.mark.parametrize("text", ["50", "50/x", "0/m", "/m", "ten/m", "5/0s"])
def test_bad_rates_name_the_format(text: str) -> None:
    with pytest.raises(ConfigurationError, match="rate limit"):
        parse_rate(text)


def test_burst_must_fit_the_limit() -> None:
    assert parse_rate("60/m", burst=5).burst == 5
    with pytest.raises(ConfigurationError, match="burst"):
        parse_rate("2/m", burst=3)


@pytest.mark.parametrize(("tat", "now", "burst", "new_tat", "wait"), [
    (0.0, 100.0, 1, 101.0, 0.0),      # idle bucket: start now
    (101.0, 100.0, 1, 102.0, 1.0),    # one slot taken: wait one interval
    (105.0, 100.0, 1, 106.0, 5.0),    # five ahead: wait five
    (102.0, 100.0, 3, 103.0, 0.0),    # within the burst: start now
    (103.0, 100.0, 3, 104.0, 1.0),    # burst used up: wait
    (99.5, 100.0, 1, 101.0, 0.0),     # stale TAT is clamped to now
])
def test_gcra_reserves_one_slot_per_request(tat: float, now: float, burst: int, new_tat: float,
                                            wait: float) -> None:
    assert gcra_reserve(tat, now, 1.0, burst) == (new_tat, wait)


@pytest.mark.parametrize("burst", [1, 3, 10])
def test_gcra_never_exceeds_burst_plus_rate_in_any_window(burst: int) -> None:
    # 200 requests arriving at once: the starts they are given
    tat, starts = 0.0, []
    for _ in range(200):
        tat, wait = gcra_reserve(tat, 0.0, 0.5, burst)
        starts.append(wait)
    assert starts[:burst] == [0.0] * burst
    for t in starts:
        assert sum(1 for u in starts if t <= u < t + 10.0) <= burst + 10.0 / 0.5


def _f(ctx: object, tenant_id: str, host: str = "", n: int = 0) -> None:
    return None


def test_options_are_validated_at_decoration() -> None:
    ok = flow_options(_f, "t", rate_limit="5/s", rate_key="host", concurrency=2,
                      concurrency_key="tenant_id", unique=["tenant_id", "n"])
    assert ok.limited and ok.rate_limit == RateLimit(5, 1.0, 1)
    for bad in (dict(rate_key="host"), dict(rate_limit="5/s", rate_key="nope"),
                dict(concurrency=0), dict(concurrency_key="host"), dict(unique="nope"),
                dict(unique=3), dict(burst=2)):
        with pytest.raises(ConfigurationError):
            flow_options(_f, "t", **bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(("options", "params", "rate", "conc"), [
    (FlowOptions(), {"a": 1}, "t", None),
    (FlowOptions(rate_key="host", concurrency=1), {"host": "smtp1"}, "t:smtp1", "t"),
    (FlowOptions(concurrency=1, concurrency_key=lambda p: p["a"] % 2), {"a": 3}, "t", "t:1"),
])
def test_keys_are_scoped_to_the_job_type(options: FlowOptions, params: dict[str, object],
                                         rate: str, conc: str | None) -> None:
    assert rate_key(options, "t", params) == rate
    assert concurrency_key(options, "t", params) == conc


def test_unique_keys() -> None:
    assert unique_key(FlowOptions(), "t", {"a": 1}) is None
    assert unique_key(FlowOptions(), "t", {"a": 1}, given="x") == "t:x"
    whole = unique_key(FlowOptions(unique=True), "t", {"b": 2, "a": 1})
    assert whole == unique_key(FlowOptions(unique=True), "t", {"a": 1, "b": 2})
    assert unique_key(FlowOptions(unique="a"), "t", {"a": "k", "b": 2}) == "t:k"
    long = unique_key(FlowOptions(), "t", {}, given="x" * 400)
    assert long is not None and len(long) < 300 and "sha256" in long
