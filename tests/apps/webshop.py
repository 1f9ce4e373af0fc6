"""A team's FastAPI app with Crisper inside: orders in its own table, jobs in the same database.

`/sync/orders` uses a SQLAlchemy Session, `/async/orders` an AsyncSession; both create an
order and submit its shipping job in the request's transaction, and roll back when asked to.
"""

from collections.abc import AsyncIterator, Iterator
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Request, Response
from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine, insert
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from crisper import Crisper, JobContext, Settings
from crisper.contrib.fastapi import AsyncSubmitter, Submitter, mount, submitter
from crisper.store.db import normalize_url

metadata = MetaData()
orders = Table("orders", metadata, Column("id", Integer, primary_key=True),
               Column("item", String(50), nullable=False))


def build(settings: Settings | None = None) -> Crisper:
    app = Crisper("webshop", settings=settings)
    app.job(name="webshop.ship")(ship)
    return app


def ship(ctx: JobContext, order_id: int) -> dict[str, int]:
    ctx.logger.info("shipping order %d", order_id)
    return {"shipped": order_id}


def create_web_app(crisper: Crisper, database_url: str) -> FastAPI:
    """The team's app: its own routes and middleware; Crisper mounted under /jobs."""
    engine = create_engine(normalize_url(database_url))
    # No pool: a connection never outlives the request's event loop (tests stop the server).
    async_engine = create_async_engine(normalize_url(database_url), poolclass=NullPool)
    metadata.create_all(engine)
    web = FastAPI()
    web.state.engines = (engine, async_engine)

    @web.middleware("http")
    async def team_auth(request: Request, call_next):  # type: ignore[no-untyped-def]
        """The team's own middleware: it marks every response and leaves Crisper's auth be."""
        response: Response = await call_next(request)
        response.headers["x-team"] = "yes"
        return response

    def sync_session() -> Iterator[Session]:
        with Session(engine) as session:
            yield session

    async def async_session() -> AsyncIterator[AsyncSession]:
        async with AsyncSession(async_engine) as session:
            yield session

    SyncSubmit = Annotated[Submitter, Depends(submitter(crisper, sync_session))]
    AsyncSubmit = Annotated[AsyncSubmitter, Depends(submitter(crisper, async_session))]

    @web.post("/sync/orders")
    def order_sync(item: str, session: Annotated[Session, Depends(sync_session)],
                   submit: SyncSubmit, fail: bool = False) -> dict[str, str]:
        order_id = session.execute(insert(orders).values(item=item).returning(orders.c.id)
                                   ).scalar_one()
        job = submit("webshop.ship", {"order_id": order_id})
        if fail:
            raise HTTPException(409, "out of stock")  # the session closes uncommitted
        session.commit()
        return {"job": str(job.id)}

    @web.post("/async/orders")
    async def order_async(item: str, session: Annotated[AsyncSession, Depends(async_session)],
                          submit: AsyncSubmit, fail: bool = False) -> dict[str, str]:
        result = await session.execute(insert(orders).values(item=item)
                                       .returning(orders.c.id))
        job = await submit("webshop.ship", {"order_id": result.scalar_one()})
        if fail:
            raise HTTPException(409, "out of stock")
        await session.commit()
        return {"job": str(job.id)}

    mount(web, crisper, prefix="/jobs")
    return web


crisper = build()
