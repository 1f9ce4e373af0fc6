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
    """Crisper's Alembic migrations: on the PostgreSQL database Django just migrated, or on
    the database CRISPER["DATABASE_URL"] names if Crisper's jobs live elsewhere."""
    from django.db import connections

    from crisper.contrib.django.conf import crisper_options, settings

    if crisper_options().get("database_url"):
        from crisper.store import Store

        store = Store(settings(using).resolved_database_url())
        try:
            store.create_all()
        finally:
            store.close()
        return
    if connections[using].vendor != "postgresql":
        return  # not Crisper's database (settings() says so when the app is built)
    from crisper.contrib.django.connection import migrate

    migrate(using)
