"""Every Crisper error travels whole: raised in the API -> problem+json -> the same class,
with the same message and fields, out of both clients; and both clients have the same methods."""

from __future__ import annotations

import asyncio
import inspect
import typing
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI

from crisper import AsyncClient, Client
from crisper.api import create_app
from crisper.client import Call
from crisper.errors import (
    CrisperError,
    InvalidRequest,
    ScheduleNotFound,
    UnknownQueue,
    error_class_for,
    error_classes,
)
from tests.api_support import key, serve
from tests.harness import Backend

pytestmark = pytest.mark.backends("postgres-redis")

# Crisper's own (a user's subclass elsewhere may share its parent's kind)
EVERY_ERROR = sorted((c for c in error_classes() if c.__module__.startswith("crisper")),
                     key=lambda c: c.__name__)

# A sample value for each constructor parameter, by its annotation (as written in errors.py).
SAMPLES: dict[str, Any] = {
    "str": "sample", "object": "0191c0de-0000-7000-8000-000000000001",
    "str | None": "a message that says what went wrong", "list[str]": ["b-queue", "a-queue"],
    "bool": True,
    "list[dict[str, Any]]": [{"loc": ["n", 0], "msg": "not an int", "type": "int_parsing"}],
}


def sample(cls: type[CrisperError]) -> CrisperError:
    """An instance of `cls` with every constructor parameter given (so every field is set);
    a KeyError here: add a sample for the new parameter's annotation to SAMPLES."""
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    args = {p.name: f"{p.name}-value" if p.annotation == "str" else SAMPLES[p.annotation]
            for p in params}
    return cls(**args)


def fields(error: CrisperError) -> dict[str, Any]:
    return {"class": type(error), "message": str(error), **vars(error)}


@pytest.fixture(scope="module")
def raising_api() -> Iterator[str]:
    """An API whose one test route raises any Crisper error by its problem kind."""
    app = FastAPI()

    @app.get("/raise/{kind}")
    def raise_(kind: str) -> None:
        cls = error_class_for(kind)
        assert cls is not None
        raise sample(cls)

    from crisper.api import problems

    problems.install(app)
    with serve(app) as url:
        yield url


def test_every_error_class_has_its_own_problem_kind() -> None:
    # Given every CrisperError subclass, however deep
    # Then each declares its own kind (one that is inherited would come back as its parent)
    assert len(EVERY_ERROR) >= 18
    kinds = [cls.kind for cls in EVERY_ERROR]
    assert len(set(kinds)) == len(kinds), kinds
    for cls in EVERY_ERROR:
        assert "kind" in vars(cls), f"{cls.__name__} must declare its own kind"
        assert 400 <= cls.status < 600 and isinstance(cls.exit_code, int)


@pytest.mark.parametrize("cls", EVERY_ERROR, ids=lambda c: c.__name__)
def test_an_error_raised_in_the_api_comes_back_as_itself(raising_api: str,
                                                         cls: type[CrisperError]) -> None:
    original = sample(cls)
    with Client(raising_api) as client, pytest.raises(CrisperError) as caught:
        client.run(Call("GET", f"/raise/{cls.kind}", lambda r: r))
    assert fields(caught.value) == fields(original)

    async def via_async() -> CrisperError:
        async with AsyncClient(raising_api) as client:
            try:
                await client.run(Call("GET", f"/raise/{cls.kind}", lambda r: r))
            except CrisperError as exc:
                return exc
        raise AssertionError("no error")

    assert fields(asyncio.run(via_async())) == fields(original)


def test_errors_of_real_handlers_come_back_as_their_classes(backend: Backend) -> None:
    # Given the real API (these three came back as a plain CrisperError before)
    crisper = backend.app_with(queues=["other"])
    with serve(create_app(crisper)) as url, Client(url, key(backend.app)) as client:
        # When a submit's option fails the request's own validation
        with pytest.raises(InvalidRequest) as bad:
            client.submit("probe.noop", priority=10_000)
        assert bad.value.field == "priority" and type(bad.value) is InvalidRequest
        # When a submit names a queue nobody declared
        with pytest.raises(UnknownQueue) as unknown:
            client.submit("probe.noop", queue="nobody-declared-this")
        assert "other" in unknown.value.known and unknown.value.field == "queue"
        # When a schedule that does not exist is read
        with pytest.raises(ScheduleNotFound) as missing:
            client.run(Call("GET", f"/v1/schedules/nope-{uuid.uuid4().hex[:6]}", lambda r: r))
        assert missing.value.name.startswith("nope-")


def _public(cls: type) -> dict[str, inspect.Signature]:
    return {name: inspect.signature(getattr(cls, name)) for name in dir(cls)
            if not name.startswith("_") and callable(getattr(cls, name))}


def test_the_async_client_has_every_method_of_the_client_with_the_same_parameters() -> None:
    sync, aio = _public(Client), _public(AsyncClient)
    assert set(sync) <= set(aio), set(sync) - set(aio)
    for name, signature in sync.items():
        # same parameters; the answer differs only in being awaited
        assert list(signature.parameters.values()) == \
            list(aio[name].parameters.values()), name
    hints = typing.get_type_hints(Client.wait)
    assert hints["return"] is typing.get_type_hints(AsyncClient.wait)["return"]


@pytest.mark.backends("postgres-redis", "sqlite-embedded")
def test_a_job_that_moved_under_an_action_is_a_concurrent_change_not_a_500(
        backend: Backend) -> None:
    # Given a job read while held, then started by someone else (queued: cancel still allowed)
    from crisper.errors import ConcurrentChange
    from crisper.store import jobs as job_sql
    from crisper.store import utcnow

    app = backend.app
    held = app.submit("probe.noop", {}, hold=True)
    stale = app.jobs.get(held.id)
    app.jobs.start(held.id)
    # When the cancel is applied to the stale read
    with pytest.raises(ConcurrentChange) as caught, app.store.transaction() as session:
        job_sql.cancel(session, stale, utcnow())
    # Then it is a Crisper error the API answers 409 (retry the action), and nothing moved
    assert caught.value.status == 409 and caught.value.job_id == str(held.id)
    assert app.jobs.get(held.id).state.value == "queued"
