"""`manage.py crisper ...`: Crisper's CLI (worker, scheduler, db upgrade, jobs) on this project.

The app comes from `settings.CRISPER["APP"]`; Django is set up before Crisper's CLI runs, so
job bodies may use the ORM.
"""

from __future__ import annotations

import os
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from crisper.contrib.django.conf import crisper_options


class Command(BaseCommand):
    help = "Run Crisper's CLI for this project: worker, scheduler, db upgrade, submit, ..."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("args", nargs="*", help="crisper CLI arguments, e.g. worker -c 4")

    def run_from_argv(self, argv: list[str]) -> None:
        """Hand everything after `crisper` to Crisper's CLI untouched (its own options too)."""
        self.handle(*argv[2:])

    def handle(self, *args: Any, **options: Any) -> None:
        from crisper.cli.main import main

        app = crisper_options().get("app")
        if app:  # the project's setting wins over the environment (--app still wins over it)
            os.environ["CRISPER_APP"] = str(app)
        main([str(a) for a in args])
