"""A test app with the built-in HTTP call job type, its back-off scaled down.

Workers load it with CRISPER_APP=tests.apps.httpapp; the allow-list is the worker's
CRISPER_OUTBOUND_ALLOW (each test says whether 127.0.0.1 is allowed).
"""

from __future__ import annotations

from crisper import Crisper, Settings
from crisper.contrib.http_call import http_call

CALL = "contrib.http_call"
MAX_RESPONSE_BYTES = 1000


def build(settings: Settings | None = None) -> Crisper:
    app = Crisper("httptest", settings=settings)
    http_call(app, name=CALL, queue="http", attempts=3, backoff=0.2, max_backoff="5s",
              request_timeout="5s", max_response_bytes=MAX_RESPONSE_BYTES)
    return app


crisper = build()
