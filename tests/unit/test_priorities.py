"""Priorities 0..255 (higher first) and the broker levels that carry them."""

from __future__ import annotations

from celery import Celery

from crisper.engine.celery_app import broker_priority
from crisper.priorities import PRIORITY_MAX, broker_level, priority_problem


def test_priorities_teams_write_are_accepted_and_the_rest_refused_with_the_range() -> None:
    assert [priority_problem(p) for p in (0, 2, 3, 5, 6, 10, PRIORITY_MAX)] == [None] * 7
    for bad in (-1, PRIORITY_MAX + 1, 1000):
        assert priority_problem(bad) == f"must be 0..255 (higher runs first), got {bad}"


def test_broker_levels_keep_the_order_of_small_scales_and_never_invert() -> None:
    # The marketing write-up's scale: e-mail 10, AI 6, default 5, scraper 3, demo 2
    assert [broker_level(p) for p in (10, 6, 5, 3, 2)] == [9, 6, 5, 3, 2]
    levels = [broker_level(p) for p in range(PRIORITY_MAX + 1)]
    assert levels == sorted(levels) and max(levels) == 9


def test_redis_serves_low_numbers_first_so_its_level_is_inverted_and_rabbitmq_is_not() -> None:
    redis, amqp = Celery(broker="redis://127.0.0.1:1/0"), Celery(broker="amqp://127.0.0.1:1//")
    assert [broker_priority(redis, p) for p in (255, 10, 9, 5, 0)] == [0, 0, 0, 4, 9]
    assert [broker_priority(amqp, p) for p in (255, 10, 9, 5, 0)] == [9, 9, 9, 5, 0]
