"""The test project's job types; its Crisper app takes its settings from Django's."""

from __future__ import annotations

from crisper import Crisper, JobContext
from crisper.contrib.django import settings

crisper = Crisper("djangoshop", settings=settings())


@crisper.job(name="shop.confirm")
def confirm(ctx: JobContext, order: int) -> dict[str, int]:
    """Confirm the order through Django's ORM, in the worker's pool process."""
    from tests.djangoproj.shop.models import Order

    updated = Order.objects.filter(pk=order, confirmed=False).update(confirmed=True)
    ctx.logger.info("order %d confirmed", order)
    return {"order": order, "updated": updated}
