"""Priorities as teams write them (0..255) are accepted by every way in, and 256 by none."""

from __future__ import annotations

import pytest

from crisper import Client
from crisper.api import create_app
from crisper.errors import InvalidRequest
from crisper.service import SubmitRequest
from tests.api_support import key, serve
from tests.harness import Backend

TEAM = {"email": 10, "ai": 6, "default": 5, "scraper": 3, "demo": 2, "top": 255}


def test_python_and_http_take_0_to_255_and_refuse_256(backend: Backend) -> None:
    crisper = backend.app
    # Given priorities as one team writes them
    # When they are submitted from Python, in bulk, and over HTTP
    direct = [crisper.submit("probe.noop", priority=p, hold=True) for p in TEAM.values()]
    bulk = crisper.submit_many([SubmitRequest("probe.noop", priority=p, hold=True)
                                for p in TEAM.values()])
    with serve(create_app(crisper)) as url, Client(url, key(crisper)) as client:
        http = [client.submit("probe.noop", priority=p, hold=True) for p in TEAM.values()]
        # Then 256 is refused over HTTP, naming the field
        with pytest.raises(InvalidRequest) as over_http:
            client.submit("probe.noop", priority=256)
        assert over_http.value.field == "priority"
    # Then each job keeps the priority it was given
    for ids in ([j.id for j in direct], [j.id for j in bulk], [j.id for j in http]):
        assert [crisper.get(i).record.priority for i in ids] == list(TEAM.values())
    # And 256 and -1 are refused in Python too, with the range in the message
    for bad in (256, -1):
        with pytest.raises(InvalidRequest, match=r"0\.\.255 \(higher runs first\)") as refused:
            crisper.submit("probe.noop", priority=bad)
        assert refused.value.field == "priority"
