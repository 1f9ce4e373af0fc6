"""The worker's consumer adopts Celery-format messages for moved tasks into durable jobs.

A message sent the old way for a task that is now a Crisper job (a caller not yet redeployed,
or a message waiting in the queue during the deploy) is turned into the job in the worker's
main process, before Celery would hold it for its eta or hand it to the pool: its task id
becomes the job id (and its idempotency key, so a redelivered message finds the job made the
first time and adds nothing), its eta or countdown a database timer. Then the message is
acknowledged; the job runs under Crisper's rules, woken by its own message. Crisper's own
wake-up messages (marked by a header) and every other task go to Celery as before.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from crisper.adoption.canvas import PORT_ATTRIBUTE, CeleryPort
from crisper.engine.consumer import Consumer as HardenedConsumer
from crisper.engine.consumer import refuse
from crisper.engine.dispatch import WAKE_HEADERS
from crisper.errors import CrisperError, InvalidParams, InvalidRequest
from crisper.store import utcnow

if TYPE_CHECKING:
    from crisper.adoption.tasks import AdoptedJobType
    from crisper.records import JobRecord
    from crisper.registry import Registry
    from crisper.service import SubmitRequest

log = logging.getLogger(__name__)
STORE_DOWN_PAUSE = 1.0  # seconds before a message that could not be adopted goes back


class Consumer(HardenedConsumer):
    def create_task_handler(self, *args: Any, **kwargs: Any) -> Callable[[Any], Any]:
        handle = super().create_task_handler(*args, **kwargs)
        port = getattr(self.app, PORT_ATTRIBUTE, None)
        if not isinstance(port, CeleryPort):
            return handle

        def on_task_received(message: Any) -> Any:
            job_type = old_format_job(port.registry, message)
            if job_type is None:
                return handle(message)
            return adopt_message(port.submit, job_type, message)

        return on_task_received


def old_format_job(registry: Registry, message: Any) -> AdoptedJobType | None:
    """The moved job type a Celery-format message is for; None for anything else."""
    from crisper.adoption.tasks import AdoptedJobType

    headers = getattr(message, "headers", None) or {}
    if all(headers.get(k) == v for k, v in WAKE_HEADERS.items()):
        return None
    name = headers.get("task")
    if name is None:  # protocol 1 keeps everything in the body
        try:
            payload = message.payload
            name = payload.get("task") if isinstance(payload, dict) else None
        except Exception:  # noqa: BLE001 - not ours to judge: Celery refuses it as before
            return None
    if not isinstance(name, str) or name not in registry:
        return None
    job_type = registry.get(name)
    return job_type if isinstance(job_type, AdoptedJobType) else None


def celery_call(message: Any) -> dict[str, Any]:
    """args, kwargs, id, eta and expires of a protocol 1 or 2 task message."""
    headers = getattr(message, "headers", None) or {}
    body = message.decode()
    if "task" in headers:  # protocol 2: body is (args, kwargs, embed)
        args, kwargs = body[0], body[1]
        fields = headers
    else:
        args, kwargs, fields = body.get("args", ()), body.get("kwargs", {}), body
    priority = (getattr(message, "properties", None) or {}).get("priority")
    if priority is None:
        priority = (getattr(message, "delivery_info", None) or {}).get("priority")
    return {"args": args, "kwargs": kwargs, "task_id": fields.get("id"),
            "eta": fields.get("eta"), "expires": fields.get("expires"), "priority": priority}


def adopt_message(submit: Callable[[SubmitRequest], JobRecord], job_type: AdoptedJobType,
                  message: Any) -> None:
    """Create (once) the job an old-format message asks for, then acknowledge the message.

    A message that cannot make a job (params the function does not take) is logged and
    dropped; if the store cannot answer, the message goes back to the queue.
    """
    try:
        call = celery_call(message)
        request = job_type.request_for(call["args"], call["kwargs"], eta=call["eta"],
                                       expires=call["expires"], priority=call["priority"],
                                       task_id=call["task_id"])
    except Exception as exc:  # noqa: BLE001 - any body we cannot read: refused, not fatal
        refuse(message, exc)
        return
    before = utcnow()
    try:
        record = submit(request)
    except (InvalidParams, InvalidRequest) as exc:
        refuse(message, exc)
        return
    except CrisperError as exc:
        log.warning("could not adopt a %s message (%s); it goes back to the queue",
                    job_type.name, exc)
        time.sleep(STORE_DOWN_PAUSE)
        message.requeue()
        return
    if record.created_at < before:  # delivered again: the first delivery made the job
        log.info("a Celery message for %s was adopted already, as job %s; dropped",
                 job_type.name, record.id)
    else:
        log.info("adopted a Celery message for %s as job %s (%s)", job_type.name, record.id,
                 record.state.value)
    message.ack()
