"""`crisper webhooks …` and `crisper batches …` as a user runs them, on a real database."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import update

from crisper.store.models import deliveries
from tests.harness import ROOT, Backend


def cli(backend: Backend, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "crisper", *args], cwd=ROOT,
                          env=backend.process_env(), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.backends("postgres-redis")
def test_webhook_and_batch_commands(backend: Backend, tmp_path: Path) -> None:
    # Subscriptions, secrets and rotation
    out = cli(backend, "webhooks", "subscribe", "https://hooks.example.com/x",
              "--event", "job.failed", "--event", "batch.finished", "--type", "probe.noop")
    sub_id = out.split()[0]
    assert sub_id in cli(backend, "webhooks", "list")
    first = cli(backend, "webhooks", "secret").split()
    rotated = cli(backend, "webhooks", "rotate", "--overlap", "1h").strip()
    assert cli(backend, "webhooks", "secret").split() == [rotated, *first]
    assert "removed" in cli(backend, "webhooks", "unsubscribe", sub_id)
    # A batch from a JSON-lines file, shown, cancelled and retried as a whole
    lines = tmp_path / "jobs.jsonl"
    lines.write_text("\n".join(json.dumps({"type": "probe.echo", "params": {"number": i}})
                               for i in range(5)))
    out = cli(backend, "batches", "submit", str(lines), "--description", "five",
              "--on-complete", "https://hooks.example.com/done")
    batch_id = out.split()[0]
    assert "total=5" in out and "pending=5" in out
    assert batch_id in cli(backend, "batches", "list")
    assert "changed=5" in cli(backend, "batches", "cancel", batch_id)
    shown = json.loads(cli(backend, "batches", "show", batch_id, "--json"))
    assert (shown["cancelled"], shown["pending"]) == (5, 0) and shown["complete_fired_at"]
    assert "changed=5" in cli(backend, "batches", "retry", batch_id)
    assert "pending=5" in cli(backend, "batches", "show", batch_id)
    # The completion delivery is recorded (to an address the scheduler would check)
    listing = cli(backend, "webhooks", "deliveries")
    assert "batch.complete pending" in listing
    # A job's deliveries, and a manual redelivery of a failed one
    job = backend.app.submit("probe.noop", hold=True, callback_url="http://127.0.0.1:9/x")
    job.cancel()
    [d] = json.loads(cli(backend, "webhooks", "deliveries", "--job", str(job.id), "--json"))
    assert (d["event"], d["state"], d["url"]) == ("job.callback", "pending",
                                                   "http://127.0.0.1:9/x")
    with backend.app.store.transaction() as session:  # as the deliverer leaves a given-up one
        session.execute(update(deliveries).where(deliveries.c.id == d["id"]).values(
            state="failed", attempts=3))
    assert cli(backend, "webhooks", "redeliver", d["id"]).split() == [d["id"], "pending"]
    assert backend.app.webhooks.delivery(d["id"], "default")[0].state == "pending"
