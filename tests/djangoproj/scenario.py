"""Submits inside Django transactions, as a view would; run as a process by the tests.

`commit-and-rollback` prints the ids of a rolled-back and a committed job; `crash` dies
(os._exit) right after Django commits, before Crisper's on_commit hook could publish.
"""

from __future__ import annotations

import json
import os
import sys

import django


class Rollback(Exception):
    """Raised to leave an atomic block by rolling it back."""


def commit_and_rollback() -> dict[str, object]:
    from django.db import transaction

    from crisper.contrib.django import submit
    from crisper.errors import JobNotFound
    from tests.djangoproj.jobs import confirm, crisper
    from tests.djangoproj.shop.models import Order

    try:
        with transaction.atomic():
            lost = Order.objects.create(item="kettle")
            rolled_back = submit(confirm, {"order": lost.pk})
            raise Rollback
    except Rollback:
        pass
    with transaction.atomic():
        order = Order.objects.create(item="teapot")
        committed = submit("shop.confirm", {"order": order.pk})
        try:  # Crisper's own connection must not see it before Django commits
            crisper.jobs.get(committed.id)
            visible = True
        except JobNotFound:
            visible = False
    return {"rolled_back": str(rolled_back.id), "committed": str(committed.id),
            "order": order.pk, "orders": Order.objects.count(),
            "visible_before_commit": visible}


def crash() -> None:
    from django.db import transaction

    from crisper.contrib.django import submit
    from tests.djangoproj.jobs import confirm
    from tests.djangoproj.shop.models import Order

    with transaction.atomic():
        transaction.on_commit(lambda: os._exit(17))  # runs before Crisper's hook: a crash
        job = submit(confirm, {"order": Order.objects.create(item="tray").pk})
        print(json.dumps({"crashed": str(job.id)}), flush=True)


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.djangoproj.settings")
    django.setup()
    if sys.argv[1] == "crash":
        crash()
    else:
        print(json.dumps(commit_and_rollback()), flush=True)
