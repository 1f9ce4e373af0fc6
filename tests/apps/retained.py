"""A test app with per-type retention: short successes, longer failures, early payload drop."""

from __future__ import annotations

from crisper import Crisper, JobContext, Retention, Retry, Settings

SHORT = Retention(succeeded="4s", failed="120s", payload="1s")


def build(settings: Settings | None = None) -> Crisper:
    app = Crisper("retained", settings=settings)
    app.job(name="ret.short", retention=SHORT, retry=Retry(attempts=1))(work)
    app.job(name="ret.plain", retry=Retry(attempts=1))(work)
    return app


def work(ctx: JobContext, word: str, fail: bool = False) -> str:
    ctx.logger.info("working on %s", word)
    if fail:
        raise ValueError(word)
    return word.upper()


crisper = build()
