"""Time-ordered job ids (UUIDv7), so that "newest first" is an index scan on the key."""

from __future__ import annotations

import os
import threading
import time
import uuid

_issued = threading.Lock()
_last_millis = 0
_last_sequence = 0
SEQUENCE_MAX = 0xFFF  # the 12 bits after the time stamp


def new_id(at: float | None = None) -> uuid.UUID:
    """A UUIDv7: 48 bits of Unix milliseconds (now, or `at` in Unix seconds), a 12-bit
    sequence, then random bits.

    Ids made now by one process only grow, also within a millisecond (the sequence counts on
    from a random start): "submission order" is id order, and the rows of one submit keep
    the order they were made in.
    """
    if at is None:
        millis, sequence = _next_now()
    else:
        millis, sequence = int(at * 1000), int.from_bytes(os.urandom(2), "big") & SEQUENCE_MAX
    rand = int.from_bytes(os.urandom(8), "big")
    value = (millis & 0xFFFF_FFFF_FFFF) << 80
    value |= 0x7 << 76  # version
    value |= sequence << 64
    value |= 0b10 << 62  # variant
    value |= rand & 0x3FFF_FFFF_FFFF_FFFF
    return uuid.UUID(int=value)


def _next_now() -> tuple[int, int]:
    """(milliseconds, sequence), strictly greater than the last pair this process issued."""
    global _last_millis, _last_sequence
    with _issued:
        millis = time.time_ns() // 1_000_000
        if millis > _last_millis:  # a new millisecond: start low in the range, at random
            _last_millis, _last_sequence = millis, int.from_bytes(os.urandom(1), "big")
        elif _last_sequence < SEQUENCE_MAX:  # the same one (or the clock stepped back)
            _last_sequence += 1
        else:  # 4,096 ids in one millisecond: borrow the next one
            _last_millis, _last_sequence = _last_millis + 1, 0
        return _last_millis, _last_sequence


def parse_id(value: object) -> uuid.UUID | None:
    """The UUID in `value`, or None when it is not one."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None
