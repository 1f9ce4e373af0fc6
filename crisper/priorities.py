"""Job priorities: 0..PRIORITY_MAX, the highest runs first.

Teams write priorities on their own scales (10 for e-mail, 2 for demos); the range is wide
enough for those, and the broker's few levels are only a hint (see `broker_level`).
"""

from __future__ import annotations

PRIORITY_MAX = 255
# What brokers order by: kombu's Redis lists and RabbitMQ's x-max-priority, 0..9 here.
BROKER_LEVELS = 9


def priority_problem(priority: int) -> str | None:
    """Why a priority is refused, or None."""
    if not 0 <= priority <= PRIORITY_MAX:
        return f"must be 0..{PRIORITY_MAX} (higher runs first), got {priority}"
    return None


def broker_level(priority: int) -> int:
    """The broker level (0..BROKER_LEVELS, highest first) that carries a priority.

    Priorities up to 9 keep a level each, so the small scales teams use keep their order on
    the broker; anything above 9 shares the top level.
    """
    return min(priority, BROKER_LEVELS)
