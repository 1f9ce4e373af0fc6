"""Dispatch's pure parts: which broker errors mean "down", the submitters' breaker, back-off."""

from __future__ import annotations

import logging

import pytest
import redis
from amqp.exceptions import AccessRefused
from kombu.exceptions import OperationalError

from crisper.engine.dispatch import Breaker, broker_wide
from crisper.maintenance.relay import MAX_BACKOFF_SECONDS, dispatch_backoff


def wrapped(cause: BaseException) -> OperationalError:
    """An error as Kombu raises it: its own OperationalError, caused by the library's."""
    try:
        raise OperationalError(str(cause)) from cause
    except OperationalError as exc:
        return exc


@pytest.mark.parametrize(("error", "down"), [
    (wrapped(redis.exceptions.ConnectionError("Error 111 connecting")), True),
    (wrapped(redis.exceptions.TimeoutError("Timeout connecting")), True),
    (ConnectionRefusedError(111, "refused"), True),
    (wrapped(redis.exceptions.ResponseError("MISCONF Redis is configured to save RDB")), True),
    (wrapped(redis.exceptions.ReadOnlyError("You can't write against a read only replica")),
     True),
    (wrapped(redis.exceptions.OutOfMemoryError("command not allowed when used memory")), True),
    (wrapped(redis.exceptions.ResponseError(
        "Command # 1 (LLEN _kombu.binding.default) of pipeline caused error: WRONGTYPE "
        "Operation against a key holding the wrong kind of value")), False),
    (AccessRefused("access to exchange 'amq.x' refused"), False),
    (ValueError("something unexpected about this message"), False),
])
def test_broker_down_or_message_refused(error: BaseException, down: bool) -> None:
    assert broker_wide(error) is down


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_breaker_skips_the_broker_for_its_cooldown_and_warns_once(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    breaker = Breaker(cooldown=5.0, clock=clock)
    assert breaker.allows()
    breaker.trip(ConnectionError("refused"))
    assert not breaker.allows()
    clock.now = 5.0
    assert breaker.allows()          # one caller tries (half-open) ...
    assert not breaker.allows()      # ... the others still skip the broker
    breaker.trip(ConnectionError("refused"))
    clock.now = 12.0
    assert breaker.allows()
    breaker.reset()
    assert breaker.allows() and breaker.allows()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1


@pytest.mark.parametrize(("attempts", "seconds"), [
    (1, 0.5), (2, 1.0), (3, 2.0), (5, 8.0), (50, MAX_BACKOFF_SECONDS),
])
def test_refused_messages_back_off_doubling_up_to_a_cap(attempts: int, seconds: float) -> None:
    assert dispatch_backoff(attempts, tick=0.5) == seconds
