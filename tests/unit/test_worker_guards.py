"""Pure checks a worker makes before anything runs: queue items and the pool it is given."""

from __future__ import annotations

import pytest

from crisper.engine.transport import Refused, check_envelope
from crisper.engine.worker import check_pool, pool_of
from crisper.errors import ConfigurationError

GOOD = {"body": "e30=", "properties": {"body_encoding": "base64", "delivery_tag": "t",
                                       "delivery_info": {"routing_key": "default"}}}


@pytest.mark.parametrize(("payload", "why"), [
    ([1, 2], "a JSON list"),
    ("text", "a JSON str"),
    ({"body": "e30="}, "no properties"),
    ({"properties": {"delivery_tag": "t", "delivery_info": 3}}, "delivery_info"),
    ({**GOOD, "body": "%%%"}, "not valid base64"),
    ({**GOOD, "body": 5}, "not a string"),
])
def test_an_item_that_is_not_an_envelope_is_refused_with_its_reason(payload: object, why: str
                                                                     ) -> None:
    with pytest.raises(Refused, match=why):
        check_envelope(payload)


def test_a_kombu_envelope_passes() -> None:
    check_envelope(GOOD)


@pytest.mark.parametrize(("args", "pool"), [
    (["-c", "2"], None), (["-P", "threads"], "threads"), (["-Psolo"], "solo"),
    (["--pool", "gevent"], "gevent"), (["--pool=eventlet", "-c", "1"], "eventlet"),
])
def test_the_pool_is_read_from_celery_arguments(args: list[str], pool: str | None) -> None:
    assert pool_of(args) == pool


@pytest.mark.parametrize("pool", ["threads", "solo", "gevent", "eventlet", "custom"])
def test_pools_that_cannot_force_a_stop_are_refused(pool: str) -> None:
    with pytest.raises(ConfigurationError, match="use --pool prefork"):
        check_pool(pool)
    check_pool("prefork")
