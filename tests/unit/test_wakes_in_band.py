"""Which processes carry the wake-up markers in band (engine/wakes.py): only those whose
broker is the markers' Redis, through Crisper's transport and kombu's acknowledgement
emulation (its pipeline deletes a taken wake-up's marker)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from celery import Celery

from crisper.engine.celery_app import make_celery
from crisper.engine.runner import _marker_taken
from crisper.engine.transport import marker_of
from crisper.engine.wakes import MARKER_HEADER, Wakes
from crisper.settings import Settings

BROKER = "redis://127.0.0.1:6379/3"


def _celery(**settings: Any) -> Celery:
    return make_celery("t", Settings(**{"broker_url": BROKER, **settings}))


@pytest.mark.parametrize(("markers", "settings", "in_band"), [
    (BROKER, {}, True),
    (None, {}, False),  # no Redis for markers: every publish goes out
    ("redis://127.0.0.1:6379/4", {}, False),  # markers in another Redis
    (BROKER, {"broker_transport_options": {"ack_emulation": False}}, False),
    (BROKER, {"broker_url": "amqp://guest:guest@127.0.0.1:5672//"}, False),  # RabbitMQ
])
def test_markers_go_in_band_only_through_the_brokers_own_redis(
        markers: str | None, settings: dict[str, Any], in_band: bool) -> None:
    assert Wakes(lambda: markers).in_band(_celery(**settings)) is in_band


def test_a_celery_app_with_a_transport_of_its_own_keeps_markers_out_of_band() -> None:
    app = Celery("theirs", broker=BROKER, set_as_current=False)
    app.conf.broker_transport = "redis"
    assert Wakes(lambda: BROKER).in_band(make_celery("t", Settings(), existing=app)) is False


@pytest.mark.parametrize("force", [False, True])
def test_without_a_redis_for_markers_every_wake_up_goes_out(force: bool) -> None:
    plan = Wakes(None).plan(_celery(), [("t.a", "q1"), ("t.b", "q2")], force=force)
    assert [(k, w.headers, w.owned) for k, w in plan.items()] == [
        (("t.a", "q1"), {}, True), (("t.b", "q2"), {}, True)]


@pytest.mark.parametrize(("headers", "key"), [
    ({MARKER_HEADER: {"key": "crisper.wake:q:t.a", "ttl": 30, "force": False}},
     "crisper.wake:q:t.a"),
    ({MARKER_HEADER: {"key": "_kombu.binding.q"}}, None),  # not a marker: never deleted
    ({MARKER_HEADER: "crisper.wake:q:t.a"}, None),
    ({MARKER_HEADER: {"key": 7}}, None),
    ({}, None),
    (None, None),
])
def test_a_message_names_a_marker_only_in_the_markers_namespace(headers: Any,
                                                                 key: str | None) -> None:
    marker = marker_of(headers)
    assert (marker["key"] if marker else None) == key


def test_a_heralds_marker_goes_in_band_and_is_left_to_the_slot() -> None:
    """A herald's marker is set by the transport's script as it pushes, like any in-band
    marker, but deleted by the taker's slot before its claim, not by the worker's main
    process on receipt (engine/wakes.py: "Heralds")."""
    herald = Wakes(lambda: BROKER).plan(_celery(), [("t.a", "q1")], herald=True)[("t.a", "q1")]
    plain = Wakes(lambda: BROKER).plan(_celery(), [("t.a", "q1")])[("t.a", "q1")]

    assert herald.owned is False and herald.headers[MARKER_HEADER] == {
        "key": "crisper.wake:q1:t.a", "ttl": 30, "force": False, "by_slot": True}
    assert "by_slot" not in plain.headers[MARKER_HEADER]
    # The slot deletes the marker only when the main process did not
    assert _marker_taken(SimpleNamespace(**herald.headers)) is False
    assert _marker_taken(SimpleNamespace(**plain.headers)) is True
