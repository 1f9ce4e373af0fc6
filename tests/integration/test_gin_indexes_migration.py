"""Migration 0020: the GIN indexes on tags and metadata hold only jobs that carry them, and
the tag and metadata filters answer the same either way."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import text

from crisper import Crisper
from crisper.store.migrate import alembic_config, upgrade
from tests.harness import Backend

GIN = ("ix_crisper_jobs_tags_gin", "ix_crisper_jobs_metadata_gin")


def _predicates(app: Crisper) -> dict[str, str | None]:
    """Each GIN index's WHERE clause as PostgreSQL prints it (None: a full index)."""
    with app.store.engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT indexname, indexdef FROM pg_indexes "
            "WHERE schemaname = current_schema() AND indexname = ANY(:names)"),
            {"names": list(GIN)}).all()
    return {name: (d.split(" WHERE ", 1)[1] if " WHERE " in d else None) for name, d in rows}


def _found(app: Crisper) -> tuple[list[str], list[str], list[str]]:
    """The ids a tag filter, a metadata filter and an unfiltered list find, sorted."""
    def ids(**filters: object) -> list[str]:
        return sorted(str(j.id) for j in app.list_jobs(**filters).items)  # type: ignore[arg-type]
    return ids(tag="blue"), ids(metadata={"customer": "c1"}), ids()


@pytest.mark.backends("postgres-redis")
def test_gin_indexes_leave_out_untagged_jobs_and_filters_agree_both_ways(
        backend: Backend) -> None:
    # Given jobs with a tag and metadata, and jobs with neither, on the schema before 0020
    app = backend.app_with(queues=["default"])
    command.downgrade(alembic_config(app.store), "0019")
    assert _predicates(app) == dict.fromkeys(GIN)
    app.submit("probe.noop", hold=True, tags=["blue"], metadata={"customer": "c1"})
    app.submit("probe.noop", hold=True, tags=["red"], metadata={"customer": "c2"})
    app.submit("probe.noop", hold=True)
    before = _found(app)
    assert (len(before[0]), len(before[1]), len(before[2])) == (1, 1, 3)

    # When the schema is brought up to date
    upgrade(app.store)

    # Then each index holds only the jobs that carry its column, and the filters find the same
    predicates = _predicates(app)
    assert "'[]'::jsonb" in (predicates["ix_crisper_jobs_tags_gin"] or "")
    assert "IS NOT NULL" in (predicates["ix_crisper_jobs_metadata_gin"] or "")
    with app.store.engine.connect() as conn:
        entries = conn.execute(text(
            "SELECT count(*) FILTER (WHERE tags <> '[]'::jsonb), "
            "count(*) FILTER (WHERE metadata IS NOT NULL) FROM crisper_jobs")).one()
    assert tuple(entries) == (2, 2)
    assert _found(app) == before

    # And going back gives full indexes, with the same answers
    command.downgrade(alembic_config(app.store), "0019")
    assert _predicates(app) == dict.fromkeys(GIN)
    assert _found(app) == before
    upgrade(app.store)
    app.store.close()
