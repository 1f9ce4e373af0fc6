"""One validated settings object, read from CRISPER_* environment variables, passed explicitly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from crisper.errors import ConfigurationError
from crisper.names import queue_problem

EMBEDDED_STATE_FILE = "embedded.json"


class Settings(BaseSettings):
    """Crisper's configuration. Each field is also the CLI flag of the same name."""

    model_config = SettingsConfigDict(env_prefix="CRISPER_", extra="ignore")

    home: Path = Field(Path(".crisper"), description="where the embedded default keeps its files")
    database_url: str | None = Field(None, description="postgresql://… or sqlite:///path")
    broker_url: str | None = Field(None, description="redis://… or amqp://…; none: embedded")
    redis_url: str | None = Field(None, description="coordination Redis; default: the broker")
    broker_prefix: str = Field("", description="key prefix on a Redis broker shared by apps")
    broker_transport_options: dict[str, Any] = Field(
        default_factory=dict, description="passed to Kombu's transport (JSON in the environment)"
    )
    app: str | None = Field(None, description="module[:attribute] holding the Crisper app")
    queues: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="queues a submit may name besides the job types' "
        "own (comma-separated in the environment); see docs/flow-control.md"
    )

    lease_seconds: float = Field(30.0, gt=0, description="a running job's claim lasts this long")
    heartbeat_seconds: float = Field(
        1.0, gt=0, description="lease renewal beat; also how soon progress is stored and a "
        "cancel request reaches a running job"
    )
    max_rescues: int = Field(
        3, ge=0, description="a job is rescued at most this many times after losing its worker "
        "without notice; the next loss fails it as poisoned (announced shutdowns do not count)"
    )
    cancel_grace_seconds: float = Field(10.0, ge=0, description="cooperative stop window")
    tick_seconds: float = Field(0.5, gt=0, description="scheduler loop period")
    redispatch_after_seconds: float = Field(
        15.0, gt=0, description="a queued job unclaimed this long, with its queue empty, is re-sent"
    )
    retention_seconds: float = Field(7 * 86400.0, gt=0, description="finished jobs kept this long")
    max_log_lines: int = Field(1000, ge=0, description="log lines kept per job")
    kill_grace_seconds: float = Field(
        30.0, ge=0, description="between a job's soft timeout and its hard kill"
    )

    api_max_body_bytes: int = Field(
        1024 * 1024, gt=0, description="largest request body the API accepts"
    )
    api_key_cache_seconds: float = Field(
        2.0, ge=0, description="an API server process trusts a key it has verified for this "
        "long before asking the database again: a revoked key is refused within it (0: ask "
        "on every request)"
    )
    metrics_require_key: bool = Field(False, description="/metrics needs an admin API key")
    metrics_window_seconds: float = Field(
        300.0, gt=0, description="/metrics histograms and finished counts cover this recent window"
    )
    drain_seconds: float = Field(
        60.0, ge=0, description="`crisper up` stopping: how long running jobs may finish before "
        "their worker is stopped cold (they are then rescued when it starts again)"
    )
    worker_lost_after_seconds: float = Field(
        30.0, gt=0, description="a worker silent this long is shown as lost"
    )

    observe: bool = Field(
        True, description="with a Celery app wrapped (Crisper(celery=app)), record its plain "
        "Celery tasks in the store through Celery's signals (docs/observe.md)"
    )
    observe_flush_seconds: float = Field(
        1.0, gt=0, description="observe mode: each process writes its buffered task records "
        "this often, one row statement per task"
    )
    observe_buffer: int = Field(
        10000, gt=0, description="observe mode: tasks a process keeps while the store is "
        "unreachable; records beyond it are dropped, counted and logged"
    )
    observe_payload_chars: int = Field(
        4096, gt=0, description="observe mode: args, results and tracebacks are cut to this size"
    )
    # Webhooks (crisper/webhooks, crisper/outbound.py).
    outbound_allow: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="networks outbound calls may reach although loopback, "
        "private or link-local, e.g. 127.0.0.1/32 (comma-separated in the environment)"
    )
    webhook_timeout_seconds: float = Field(10.0, gt=0, description="one delivery's HTTP timeout")
    webhook_backoff_seconds: float = Field(
        10.0, gt=0, description="the first retry of a failed delivery waits this long; doubling")
    webhook_backoff_max_seconds: float = Field(
        3600.0, gt=0, description="the longest wait between two tries of one delivery")
    webhook_give_up_seconds: float = Field(
        3 * 86400.0, gt=0, description="a delivery still failing this long after its event is "
        "given up (redeliver it by hand)")
    webhook_concurrency: int = Field(8, ge=1, description="deliveries one scheduler sends at once")

    @field_validator("outbound_allow", mode="before")
    @classmethod
    def _allow_list(cls, value: Any) -> Any:
        """Comma-separated networks or a list; each must parse as an address or network."""
        import ipaddress

        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        for entry in value if isinstance(value, list) else []:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"outbound_allow: {entry!r} is not an address or "
                                 "network (e.g. 127.0.0.1/32)") from None
        return value

    @field_validator("queues", mode="before")
    @classmethod
    def _queue_names(cls, value: Any) -> Any:
        """Comma-separated text or a list; each a safe queue name, or the settings are refused."""
        if isinstance(value, str):
            value = [q.strip() for q in value.split(",") if q.strip()]
        for name in value if isinstance(value, list) else []:
            problem = queue_problem(name)
            if problem is not None:
                raise ValueError(problem)
        return value

    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'crisper.db'}"

    def resolved_broker_url(self) -> str | None:
        """The broker URL, or the embedded server's if `crisper up` started one here."""
        if self.broker_url:
            return self.broker_url
        state = self.home / EMBEDDED_STATE_FILE
        if not state.exists():
            return None
        try:
            url = json.loads(state.read_text())["url"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigurationError(
                f"{state} is unreadable or incomplete ({type(exc).__name__}); it is rewritten "
                "by `crisper up`: stop it and start it again") from exc
        if not isinstance(url, str):
            raise ConfigurationError(f"{state} names no broker URL; restart `crisper up`")
        return url

    def resolved_redis_url(self) -> str | None:
        if self.redis_url:
            return self.redis_url
        broker = self.resolved_broker_url()
        return broker if broker and broker.startswith(("redis://", "rediss://")) else None
