"""Retry policy and the pure decision it makes after a failed attempt."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from crisper.durations import Duration, seconds
from crisper.errors import ConfigurationError, InvalidRequest


@dataclass(frozen=True)
class Retry:
    """How a job type retries: `attempts` in all, exponential back-off from `backoff`.

    `retry_on` lists the exception types that retry (default: any Exception);
    `dont_retry_on` lists those that fail at once, even if they match `retry_on`.
    """

    attempts: int = 1
    backoff: Duration = "5s"
    max_backoff: Duration = "1h"
    factor: float = 2.0
    jitter: bool = True
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    dont_retry_on: tuple[type[BaseException], ...] = field(default=())

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ConfigurationError("Retry(attempts=...) must be at least 1")
        for name in ("backoff", "max_backoff"):  # validate early, when the job type is declared
            try:
                seconds(getattr(self, name))
            except InvalidRequest as exc:
                raise ConfigurationError(f"Retry({name}=...): {exc.reason}") from None

    def to_json(self) -> dict[str, Any]:
        """The part of the policy the scheduler needs without the user's code (lost workers)."""
        return {
            "attempts": self.attempts,
            "backoff": seconds(self.backoff),
            "max_backoff": seconds(self.max_backoff),
            "factor": self.factor,
            "jitter": self.jitter,
        }


@dataclass(frozen=True)
class Decision:
    retry: bool
    delay: float = 0.0


def delay_for(attempt: int, policy: dict[str, Any], rng: random.Random | None = None) -> float:
    """Back-off before the attempt after `attempt` (1-based): base * factor**(attempt-1), capped.

    With jitter, the delay is drawn uniformly from [delay/2, delay] so that many jobs
    failing together do not come back together.
    """
    base = float(policy["backoff"]) * float(policy["factor"]) ** max(attempt - 1, 0)
    capped = min(base, float(policy["max_backoff"]))
    if policy.get("jitter"):
        capped = (rng or random).uniform(capped / 2, capped)
    return capped


def decide(
    attempt: int,
    max_attempts: int,
    policy: dict[str, Any],
    error: BaseException | None = None,
    retry_on: tuple[type[BaseException], ...] = (Exception,),
    dont_retry_on: tuple[type[BaseException], ...] = (),
) -> Decision:
    """Whether attempt number `attempt` (1-based), which failed with `error`, is tried again."""
    if attempt >= max_attempts:
        return Decision(retry=False)
    if error is not None and (
        isinstance(error, dont_retry_on) or not isinstance(error, retry_on)
    ):
        return Decision(retry=False)
    return Decision(retry=True, delay=delay_for(attempt, policy))
