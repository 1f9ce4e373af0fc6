"""Crisper's API and dashboard beside Django in one ASGI server, under a URL prefix.

Django's URLconf routes to Django views and cannot hold an ASGI app, so the composition
happens one level up: requests under `prefix` go to Crisper's FastAPI app, all others to
Django. Same server, same origin; Crisper's routes keep their own API-key auth.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.routing import Mount

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from crisper.app import Crisper


def with_crisper(django_app: ASGIApp, crisper: Crisper | None = None,
                 prefix: str = "/crisper") -> ASGIApp:
    """`django_app` (from get_asgi_application()) with Crisper mounted under `prefix`."""
    from crisper.api.app import create_app

    if crisper is None:
        from crisper.contrib.django.conf import get_app

        crisper = get_app()
    return Starlette(routes=[Mount(prefix.rstrip("/"), app=create_app(crisper)),
                             Mount("", app=django_app)])
