"""The Django app config: Crisper's migrations follow `manage.py migrate`."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class CrisperConfig(AppConfig):
    name = "crisper.contrib.django"
    label = "crisper"
    verbose_name = "Crisper jobs"

    def ready(self) -> None:
        post_migrate.connect(_migrate_crisper, sender=self,
                             dispatch_uid="crisper.contrib.django.migrate")


def _migrate_crisper(sender: AppConfig, using: str = "default", **_: Any) -> None:
    """Crisper's Alembic migrations, on the database Django just migrated."""
    from crisper.contrib.django.connection import migrate

    migrate(using)
