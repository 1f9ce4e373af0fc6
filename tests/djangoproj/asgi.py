"""The test project's ASGI entry point: Django, with Crisper under /crisper."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.djangoproj.settings")
django_app = get_asgi_application()

from crisper.contrib.django.asgi import with_crisper  # noqa: E402  (after Django's setup)

application = with_crisper(django_app, prefix="/crisper")
