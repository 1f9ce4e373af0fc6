"""A test app for the testing mode: a job that submits others, retries, failures, progress."""

from __future__ import annotations

from crisper import Crisper, JobContext, Retry, Settings
from tests.apps import probe


def build(settings: Settings | None = None) -> Crisper:
    app = Crisper("inline", settings=settings)

    @app.job(name="inline.parent")
    def parent(ctx: JobContext, children: int) -> int:
        """Submits its children from inside its body, as an app's job would."""
        for i in range(children):
            app.submit("inline.child", {"n": i})
        ctx.logger.info("submitted %d children", children)
        return children

    app.job(name="inline.child")(child)
    app.job(name="inline.flaky", retry=Retry(attempts=3, backoff="10m", jitter=False))(
        probe.flaky)
    app.job(name="inline.fatal", retry=Retry(attempts=3, dont_retry_on=(KeyError,)))(
        probe.fatal)
    app.job(name="inline.chatty")(probe.chatty)
    return app


def child(ctx: JobContext, n: int) -> int:
    return n * n
