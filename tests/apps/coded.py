"""A test app with schedules declared in code: one on the decorator, one by crisper.schedule."""

from __future__ import annotations

from crisper import Crisper, JobContext, Settings


def build(settings: Settings | None = None) -> Crisper:
    app = Crisper("coded", settings=settings)
    app.job(name="coded.nightly", schedule="0 3 * * *")(nightly)
    app.job(name="coded.ping")(ping)
    app.schedule("coded.every-second", "coded.ping", "* * * * * *", {"word": "tick"},
                 tz="Europe/Riga", overlap="allow")
    return app


def nightly(ctx: JobContext) -> None:
    return None


def ping(ctx: JobContext, word: str) -> str:
    return word


crisper = build()
