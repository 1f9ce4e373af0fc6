"""The two systems under test behind one small interface: start a worker, submit, wait.

Each adapter submits the way its users would in bulk (Crisper: submit_many, one transaction
per batch; Celery: send_task on one producer), and knows when its jobs are truly finished.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

import redis

from bench.apps import celery_noop, crisper_noop
from bench.environment import ROOT, Proc, World, backend_pids, python, wait_ready
from crisper import Settings, SubmitRequest
from crisper.states import TERMINAL
from crisper.store import jobs as job_sql

WORKER_FLAGS = ["--concurrency", "2", "--pool", "prefork", "--without-mingle",
                "--without-gossip", "--without-heartbeat", "--loglevel", "WARNING"]


class System:
    """One queueing system in one benchmark run: its worker processes and its producer."""

    name = ""

    def __init__(self, world: World, signals: redis.Redis, logs: Path) -> None:
        self.world = world
        self.signals = signals
        self.logs = logs
        self.signal_key = f"{world.prefix('sig')}{self.name}:started"
        self.count_key = f"{world.prefix('sig')}{self.name}:counts"
        self.extra_env: dict[str, str] = {}
        self.workers: list[Proc] = []
        self.support: list[Proc] = []

    # -- processes --------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("CRISPER_", "BENCH_"))}
        env.update({"PYTHONPATH": str(ROOT), "BENCH_SIGNAL_URL": self.world.signal_url,
                    "BENCH_SIGNAL_KEY": self.signal_key,
                    "BENCH_QUEUE": self.world.queue(self.name), **self.extra_env})
        return env

    def worker_command(self, hostname: str) -> list[str]:
        raise NotImplementedError

    def start_worker(self) -> Proc:
        hostname = f"{self.name}-{uuid.uuid4().hex[:6]}@bench"
        ready = f"{self.world.prefix('sig')}ready:{hostname}"
        env = {**self.env(), "BENCH_READY_KEY": ready}
        proc = Proc(self.worker_command(hostname), env, self.logs / f"{hostname}.log")
        self.workers.append(proc)
        wait_ready(self.signals, ready, proc)
        return proc

    def start_support(self) -> None:
        """Processes the system needs besides workers (Crisper: its scheduler)."""

    def stop_workers(self) -> None:
        for proc in self.workers:
            proc.stop()
        self.workers.clear()

    # -- producing and finishing ------------------------------------------------------------

    def submit(self, count: int, batch: int) -> None:
        raise NotImplementedError

    def submit_one(self) -> Any:
        raise NotImplementedError

    def submit_each(self, count: int) -> None:
        """One call per job, as a web app submitting per request does."""
        for _ in range(count):
            self.submit_one()

    def fill_other_queue(self, count: int) -> None:
        """`count` jobs queued on a queue no worker consumes: a backlog that is not ours."""
        raise NotImplementedError

    def other_queue(self) -> str:
        return f"{self.world.queue(self.name)}_other"

    def settle(self, handle: Any) -> None:
        """After a pickup sample: let the job finish so the next one finds an idle worker."""

    def started(self) -> int:
        return int(self.signals.llen(self.signal_key))

    def start_times(self) -> list[float]:
        return [float(v) for v in self.signals.lrange(self.signal_key, 0, -1)]

    def reset_signals(self) -> None:
        self.signals.delete(self.signal_key)

    def wait_pickup(self, timeout: float = 30) -> float:
        """Block until the next job body starts; its start time (epoch seconds)."""
        got = self.signals.blpop([self.signal_key], timeout=timeout)
        if got is None:
            raise RuntimeError(f"{self.name}: no job started within {timeout}s")
        return float(got[1])

    def wait_finished(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.started() < count:
            self._check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: {self.started()}/{count} started "
                                   f"after {timeout}s")
            time.sleep(0.005)

    def db_pids(self) -> list[int]:
        return []

    def _check_alive(self) -> None:
        for proc in [*self.workers, *self.support]:
            if not proc.alive():
                raise RuntimeError(f"{self.name}: a process exited:\n{proc.tail()}")

    def close(self) -> None:
        self.stop_workers()
        for proc in self.support:
            proc.stop()
        self.support.clear()


class PlainCelery(System):
    name = "celery"

    def __init__(self, world: World, signals: redis.Redis, logs: Path) -> None:
        super().__init__(world, signals, logs)
        self.prefix = world.prefix("celery") if world.is_redis else ""
        self.profile = os.environ.get("BENCH_CELERY_PROFILE", "acks-late")
        self.extra_env = {"BENCH_BROKER_URL": world.broker, "BENCH_BROKER_PREFIX": self.prefix,
                          "BENCH_CELERY_PROFILE": self.profile}
        self.app = celery_noop.make(world.broker, self.prefix, world.queue(self.name),
                                    self.profile)

    def worker_command(self, hostname: str) -> list[str]:
        return [python(), "-m", "celery", "-A", "bench.apps.celery_noop", "worker", "-n",
                hostname, "-Q", self.world.queue(self.name), *WORKER_FLAGS]

    def submit(self, count: int, batch: int) -> None:
        queue = self.world.queue(self.name)
        with self.app.producer_or_acquire() as producer:
            for _ in range(count):
                self.app.send_task(celery_noop.TASK, queue=queue, producer=producer)

    def submit_one(self) -> Any:
        return self.app.send_task(celery_noop.TASK, queue=self.world.queue(self.name))

    def submit_each(self, count: int) -> None:
        """`delay()` in a loop: each call acquires a producer from the pool, as in a view."""
        task = self.app.tasks[celery_noop.TASK]
        for _ in range(count):
            task.delay()

    def fill_other_queue(self, count: int) -> None:
        with self.app.producer_or_acquire() as producer:
            for _ in range(count):
                self.app.send_task(celery_noop.TASK, queue=self.other_queue(), producer=producer)

    def close(self) -> None:
        super().close()
        self.app.close()


class CrisperSystem(System):
    name = "crisper"

    def __init__(self, world: World, signals: redis.Redis, logs: Path) -> None:
        super().__init__(world, signals, logs)
        self.prefix = world.prefix("crisper") if world.is_redis else ""
        self.extra_env = {"CRISPER_DATABASE_URL": world.database_url,
                          "CRISPER_BROKER_URL": world.broker,
                          "CRISPER_BROKER_PREFIX": self.prefix,
                          "CRISPER_APP": "bench.apps.crisper_noop"}
        settings = Settings(database_url=world.database_url, broker_url=world.broker,
                            broker_prefix=self.prefix, queues=[self.other_queue()])
        self.app = crisper_noop.build(settings, queue=world.queue(self.name))
        self.app.store.create_all()

    def worker_command(self, hostname: str) -> list[str]:
        return [python(), "-m", "crisper", "worker", "-n", hostname,
                "-Q", self.world.queue(self.name), *WORKER_FLAGS]

    def start_support(self) -> None:
        proc = Proc([python(), "-m", "crisper", "scheduler"], self.env(),
                    self.logs / "scheduler.log")
        self.support.append(proc)

    def submit(self, count: int, batch: int) -> None:
        request = SubmitRequest(type=crisper_noop.JOB)
        left = count
        while left > 0:
            size = min(batch, left)
            self.app.submit_many([request] * size)
            left -= size

    def submit_one(self) -> Any:
        return self.app.submit(crisper_noop.JOB)

    def fill_other_queue(self, count: int) -> None:
        request = SubmitRequest(type=crisper_noop.JOB, queue=self.other_queue())
        for start in range(0, count, 1000):
            self.app.submit_many([request] * min(1000, count - start))

    def settle(self, handle: Any) -> None:
        handle.wait(timeout=30, poll=0.002)

    def unfinished(self) -> int:
        with self.app.store.read() as session:
            counts = job_sql.count_by_state(session)
        terminal = {s.value for s in TERMINAL}
        return sum(n for state, n in counts.items() if state not in terminal)

    def wait_finished(self, count: int, timeout: float) -> None:
        """Every body started, and then every row terminal: the outcome is durable."""
        deadline = time.monotonic() + timeout
        super().wait_finished(count, timeout)
        while self.unfinished():
            self._check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: {self.unfinished()} jobs not finished "
                                   f"after {timeout}s")
            time.sleep(0.005)

    def db_pids(self) -> list[int]:
        return backend_pids(self.world)

    def close(self) -> None:
        super().close()
        self.app.store.engine.dispose()
        if "celery" in self.app.__dict__:
            self.app.celery.close()
