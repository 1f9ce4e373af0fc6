"""Job ids: time-ordered, and strictly growing within one process."""

from __future__ import annotations

import time

from crisper.ids import new_id


def test_ids_made_in_a_row_only_grow_even_within_one_millisecond() -> None:
    ids = [new_id() for _ in range(20_000)]  # many per millisecond, and past 4,096 in one
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(i.version == 7 and i.variant == "specified in RFC 4122" for i in ids[:100])


def test_an_id_carries_its_time_in_milliseconds() -> None:
    at = time.time() - 3600
    assert new_id(at).int >> 80 == int(at * 1000)
    assert abs((new_id().int >> 80) - time.time_ns() // 1_000_000) < 1000
