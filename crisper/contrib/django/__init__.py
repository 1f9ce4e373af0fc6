"""Crisper in a Django project: add "crisper.contrib.django" to INSTALLED_APPS.

- `settings()` builds Crisper's Settings from `settings.CRISPER` (database from DATABASES);
- `submit()` writes the job on Django's own connection, inside the current `atomic()` block,
  so the job exists if and only if Django's transaction commits;
- `manage.py migrate` also brings Crisper's tables to head (on Django's connection);
- `manage.py crisper worker|scheduler|db upgrade|...` runs Crisper's CLI on that app.
See docs/integrations.md.
"""

from crisper.contrib.django.conf import get_app, settings
from crisper.contrib.django.submit import submit

__all__ = ["get_app", "settings", "submit"]
