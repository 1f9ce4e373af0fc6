"""Time-ordered job ids (UUIDv7), so that "newest first" is an index scan on the key."""

from __future__ import annotations

import os
import time
import uuid


def new_id(at: float | None = None) -> uuid.UUID:
    """A UUIDv7: 48 bits of Unix milliseconds (now, or `at` in Unix seconds), then random bits."""
    millis = time.time_ns() // 1_000_000 if at is None else int(at * 1000)
    rand = int.from_bytes(os.urandom(10), "big")
    value = (millis & 0xFFFF_FFFF_FFFF) << 80
    value |= 0x7 << 76  # version
    value |= ((rand >> 68) & 0xFFF) << 64
    value |= 0b10 << 62  # variant
    value |= rand & 0x3FFF_FFFF_FFFF_FFFF
    return uuid.UUID(int=value)


def parse_id(value: object) -> uuid.UUID | None:
    """The UUID in `value`, or None when it is not one."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None
