"""Crisper's settings from Django's: `settings.CRISPER`, with the database from DATABASES."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from django.conf import settings as django_settings

from crisper.app import Crisper
from crisper.errors import ConfigurationError
from crisper.settings import Settings

POSTGRES_ENGINES = ("django.db.backends.postgresql", "django.contrib.gis.db.backends.postgis")


def crisper_options() -> dict[str, Any]:
    """`settings.CRISPER`: Crisper's setting names, upper or lower case, plus "APP"."""
    options = getattr(django_settings, "CRISPER", {})
    if not isinstance(options, dict):
        raise ConfigurationError("settings.CRISPER must be a dict of Crisper settings")
    return {str(k).lower(): v for k, v in options.items()}


def settings(using: str = "default") -> Settings:
    """Crisper's Settings for this project: CRISPER's values over CRISPER_* environment
    variables, and the database Django uses (alias `using`) unless CRISPER names one."""
    options = {k: v for k, v in crisper_options().items() if k != "app"}
    if not options.get("database_url"):
        options["database_url"] = database_url(using)
    return Settings(**options)


def get_app() -> Crisper:
    """The project's Crisper app, named by `CRISPER["APP"]` ("module" or "module:attribute")."""
    from crisper.loading import load_app

    spec = crisper_options().get("app")
    if not spec:
        raise ConfigurationError('settings.CRISPER["APP"] must name your Crisper app, '
                                 'e.g. "shop.jobs:crisper"')
    return load_app(str(spec))


def database_url(using: str = "default") -> str:
    """A PostgreSQL URL for a Django database alias, its OPTIONS as connection parameters."""
    db = django_settings.DATABASES[using]
    if db.get("ENGINE") not in POSTGRES_ENGINES:
        raise ConfigurationError(
            f"Crisper runs beside Django on PostgreSQL; DATABASES[{using!r}] uses "
            f"{db.get('ENGINE')!r} (set CRISPER['DATABASE_URL'] to use another database)")
    user = quote(db.get("USER") or "", safe="")
    password = quote(db.get("PASSWORD") or "", safe="")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = db.get("HOST") or "localhost"
    port = f":{db['PORT']}" if db.get("PORT") else ""
    params = {k: str(v) for k, v in (db.get("OPTIONS") or {}).items()
              if isinstance(v, str | int)}
    query = f"?{urlencode(params)}" if params else ""
    return f"postgresql://{auth}{host}{port}/{db['NAME']}{query}"
