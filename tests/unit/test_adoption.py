"""Adoption of a Celery app, the pure parts: option mapping, priorities, routes, beat entries,
argument binding and `self.retry()` (the rest runs on real workers in tests/examples)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from celery import Celery
from celery.exceptions import MaxRetriesExceededError
from celery.schedules import crontab

from crisper import Crisper, Settings
from crisper.adoption import celery_queue
from crisper.adoption.beat import cron_line, import_beat, schedule_name
from crisper.adoption.options import crisper_priority, map_options
from crisper.adoption.tasks import AdoptedJobType, BoundTask, RetryLater, current_job
from crisper.engine.context import JobContext
from crisper.errors import ConfigurationError, InvalidRequest
from crisper.priorities import PRIORITY_MAX


def wrapped(tmp_path: Path, broker: str = "redis://127.0.0.1:6379/0") -> tuple[Celery, Crisper]:
    app = Celery("proj", broker=broker, set_as_current=False)
    app.conf.task_routes = {"proj.emails.*": {"queue": "mail"}}
    app.conf.task_default_queue = "general"
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'c.db'}")
    return app, Crisper("proj", settings=settings, celery=app)


def test_priority_keeps_its_meaning_per_broker() -> None:
    top = PRIORITY_MAX
    assert crisper_priority(0, redis_broker=True) == top  # Redis: 0 runs first
    assert crisper_priority(9, redis_broker=True) == 0
    assert crisper_priority(3, redis_broker=True) == top - round(3 * top / 9)
    assert crisper_priority(255, redis_broker=False) == top  # RabbitMQ: the highest first
    assert crisper_priority(0, redis_broker=False) == 0
    assert crisper_priority(10, redis_broker=False, amqp_max=10) == top
    ranks = [crisper_priority(p, redis_broker=False, amqp_max=10) for p in range(11)]
    assert ranks == sorted(ranks)
    assert crisper_priority(None, redis_broker=True) is None
    assert crisper_priority(5, redis_broker=True, top=255) == 255 - round(5 * 255 / 9)


def test_celery_options_map_to_crisper_options() -> None:
    mapped = map_options("t", {"bind": True, "time_limit": 60, "soft_time_limit": 50,
                               "max_retries": 2, "autoretry_for": (OSError,),
                               "retry_backoff": 3, "retry_backoff_max": 20,
                               "retry_jitter": False, "acks_late": True,
                               "ignore_result": True, "rate_limit": "10"})
    assert mapped.bind is True
    assert mapped.crisper["timeout"] == (50.0, 60.0)
    assert mapped.crisper["rate_limit"] == "10/s"
    retry = mapped.crisper["retry"]
    assert retry.attempts == 3 and retry.backoff == 3.0 and retry.factor == 2.0
    assert retry.max_backoff == 20.0 and retry.jitter is False
    assert retry.retry_on == (OSError, RetryLater)
    plain = map_options("t", {"default_retry_delay": 7})
    assert plain.crisper["retry"].attempts == 4  # Celery's default max_retries is 3
    assert plain.crisper["retry"].backoff == 7.0 and plain.crisper["retry"].factor == 1.0
    assert plain.crisper["retry"].retry_on == (RetryLater,)  # other errors fail, as in Celery


@pytest.mark.parametrize(("options", "names"), [
    ({"base": object}, "base="),
    ({"serializer": "pickle"}, "JSON"),
    ({"frobnicate": 1}, "frobnicate"),
    ({"retry_kwargs": {"eta": 1}}, "retry_kwargs"),
])
def test_options_without_a_mapping_are_refused_with_the_replacement(
        options: dict[str, object], names: str) -> None:
    with pytest.raises(ConfigurationError, match=names):
        map_options("t", options)


def test_a_moved_task_goes_where_celery_routes_it(tmp_path: Path) -> None:
    app, crisper = wrapped(tmp_path)
    assert celery_queue(app, "proj.emails.send") == "mail"
    assert celery_queue(app, "proj.other.thing") == "general"

    @crisper.job(name="proj.emails.send")
    def send(to: str) -> str:
        return to

    @crisper.job(queue="fast")
    def ping() -> str:
        return "pong"

    assert crisper.settings.queues == ["general", "mail"]  # `crisper worker` consumes them
    assert send.options.queue == "mail"
    assert send.options.priority == PRIORITY_MAX  # Celery's default 0, on Redis
    assert ping.options.priority == PRIORITY_MAX
    assert ping.options.queue == "fast"
    assert ping.name.endswith(".ping")  # Celery's default name: module.function
    assert isinstance(send, AdoptedJobType)
    assert send("x") == "x"  # calling the task runs it here, as in Celery
    crisper.store.close()


def test_positional_args_bind_to_the_signature(tmp_path: Path) -> None:
    _, crisper = wrapped(tmp_path)

    @crisper.job(bind=True)
    def send(self: BoundTask, to: str, subject: str = "hi") -> str:
        return to

    assert send.bind_params(("a",), {"subject": "s"}) == {"to": "a", "subject": "s"}
    with pytest.raises(InvalidRequest):
        send.bind_params(("a", "b", "c"), {})
    with pytest.raises(InvalidRequest):
        send.bind_params(("a",), {"to": "b"})
    request = send.request_for(("a",), {}, countdown=30, priority=0, task_id=str(uuid.uuid4()))
    assert request.priority == PRIORITY_MAX
    assert request.job_id is not None and request.idempotency_key == f"celery:{request.job_id}"
    assert request.run_at is not None
    assert send.json_schema()["required"] == ["to"]
    crisper.store.close()


def test_rate_limits_without_any_redis_are_refused_at_definition(tmp_path: Path) -> None:
    _, crisper = wrapped(tmp_path, broker="amqp://guest:guest@127.0.0.1:5672//")
    with pytest.raises(ConfigurationError, match="CRISPER_REDIS_URL"):
        @crisper.job(rate_limit="5/m")
        def limited(x: int) -> int:
            return x
    crisper.store.close()


def test_beat_entries_become_cron_lines() -> None:
    assert cron_line(crontab(minute="*/15", hour="3")) == "*/15 3 * * *"
    assert cron_line(300.0) == "*/5 * * * *"
    assert cron_line(timedelta(hours=1)) == "0 * * * *"
    assert cron_line(timedelta(hours=6)) == "0 */6 * * *"
    with pytest.raises(ValueError):
        cron_line(7)
    assert schedule_name("nightly tally") == "nightly-tally"


def test_moved_beat_entries_leave_celery_beat(tmp_path: Path) -> None:
    app, crisper = wrapped(tmp_path)
    app.conf.beat_schedule = {"every five": {"task": "proj.fetch", "schedule": 300.0,
                                             "args": ("u",)},
                              "other": {"task": "proj.plain", "schedule": 60.0}}

    @crisper.job(name="proj.fetch")
    def fetch(url: str) -> str:
        return url

    assert list(app.conf.beat_schedule) == ["other"]
    declared = crisper.code_schedules["every-five"]
    assert (declared.cron, declared.params) == ("*/5 * * * *", {"url": "u"})
    crisper.store.create_all()
    entries, report = import_beat(crisper.adopted, crisper.schedules.sync_code)
    assert entries == {"every-five": "every five"} and report.added == ["every-five"]
    stored = crisper.schedules.get("every-five")
    assert (stored.type, stored.cron) == ("proj.fetch", "*/5 * * * *")
    crisper.store.close()


def _ctx(attempt: int, max_attempts: int) -> JobContext:
    return JobContext(job_id=uuid.uuid4(), job_type="t", attempt=attempt,
                      max_attempts=max_attempts, lease_token=uuid.uuid4(), lease_seconds=30,
                      max_log_lines=10)


def test_self_retry_asks_for_a_timed_attempt_until_the_last(tmp_path: Path) -> None:
    _, crisper = wrapped(tmp_path)

    @crisper.job(bind=True, max_retries=1, default_retry_delay=4)
    def flaky(self: BoundTask) -> None:
        raise self.retry()

    with pytest.raises(RetryLater) as first:
        BoundTask(flaky, _ctx(1, 2)).retry(countdown=9)
    assert first.value.retry_delay == 9
    with pytest.raises(RetryLater) as default:
        BoundTask(flaky, _ctx(1, 2)).retry()
    assert default.value.retry_delay == 4
    with pytest.raises(MaxRetriesExceededError):
        BoundTask(flaky, _ctx(2, 2)).retry()
    with pytest.raises(KeyError):
        BoundTask(flaky, _ctx(2, 2)).retry(exc=KeyError("gone"))
    with pytest.raises(RuntimeError):
        current_job()
    crisper.store.close()


class _Message:
    """The parts of a Kombu message the adopting consumer reads."""

    def __init__(self, headers: dict[str, object], body: object) -> None:
        self.headers = headers
        self.body = body
        self.properties = {"priority": 2}
        self.delivery_info: dict[str, object] = {}

    def decode(self) -> object:
        return self.body


def test_old_format_messages_are_read_in_both_protocols(tmp_path: Path) -> None:
    from crisper.adoption.consumer import celery_call, old_format_job
    from crisper.engine.dispatch import WAKE_HEADERS

    _, crisper = wrapped(tmp_path)

    @crisper.job(name="proj.add")
    def add(x: int, y: int) -> int:
        return x + y

    v2 = _Message({"task": "proj.add", "id": "abc", "eta": "2030-01-01T00:00:00+00:00"},
                  [[1], {"y": 2}, {}])
    assert old_format_job(crisper.registry, v2) is add
    assert celery_call(v2) == {"args": [1], "kwargs": {"y": 2}, "task_id": "abc",
                               "eta": "2030-01-01T00:00:00+00:00", "expires": None,
                               "priority": 2}
    v1 = _Message({}, {"task": "proj.add", "id": "def", "args": [1, 2], "kwargs": {}})
    v1.payload = v1.body  # type: ignore[attr-defined]
    assert old_format_job(crisper.registry, v1) is add
    assert celery_call(v1)["args"] == [1, 2] and celery_call(v1)["task_id"] == "def"
    wake = _Message({"task": "proj.add", "id": "w", **WAKE_HEADERS}, [[["id"]], {}, {}])
    assert old_format_job(crisper.registry, wake) is None  # Crisper's own wake-up: the runner's
    other = _Message({"task": "proj.unmoved", "id": "x"}, [[], {}, {}])
    assert old_format_job(crisper.registry, other) is None
    crisper.store.close()


def test_a_job_started_after_its_expiry_is_cancelled(tmp_path: Path) -> None:
    from crisper.adoption.results import check_expiry
    from crisper.errors import Cancelled

    _, crisper = wrapped(tmp_path)
    crisper.store.create_all()

    @crisper.job(name="proj.add")
    def add(x: int, y: int) -> int:
        return x + y

    expired = add.request_for((1, 2), {}, expires=-1)
    fresh = add.request_for((1, 2), {}, expires=3600)
    for request, late in ((expired, True), (fresh, False)):
        request.hold = True  # stored without a wake-up message
        job = crisper.jobs.submit(request)
        ctx = _ctx(1, 1)
        ctx.job_id = job.id
        if late:
            with pytest.raises(Cancelled):
                check_expiry(add, ctx)
            assert ctx.cancel_requested
        else:
            check_expiry(add, ctx)
    crisper.store.close()


def test_celery_options_on_an_app_without_celery_are_refused(tmp_path: Path) -> None:
    crisper = Crisper("plain", settings=Settings(database_url=f"sqlite:///{tmp_path / 'c.db'}"))
    with pytest.raises(ConfigurationError, match="wraps a Celery app"):
        @crisper.job(max_retries=3)
        def job(ctx: object) -> None:
            return None


def test_a_dropped_result_of_a_plain_task_costs_the_store_no_statement(tmp_path: Path) -> None:
    # Given a wrapped app whose store counts the statements it runs
    from celery.result import AsyncResult
    from sqlalchemy import event

    from crisper.store.migrate import upgrade

    app, crisper = wrapped(tmp_path)
    upgrade(crisper.store)
    statements: list[str] = []
    event.listen(crisper.store.engine, "before_cursor_execute",
                 lambda conn, cursor, sql, *rest: statements.append(sql))

    # When results of plain tasks are made and dropped (Celery does so after every publish)
    for _ in range(20):
        result = AsyncResult(str(uuid.uuid4()), app=app)
        del result
    # Then the store saw nothing (a job's result still reads the store: tests/examples)
    assert statements == []
