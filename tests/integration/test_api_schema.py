"""Property-based fuzzing of the whole OpenAPI schema: no 500s, every answer matches the schema."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.api_support import api_server, key
from tests.harness import Backend


def semantic_only(path: str) -> list[Any]:
    """Checks not to run on an operation whose input has rules no JSON Schema can state.

    A cron expression's grammar (ranges per field, names, steps) is checked by the server:
    a schema-valid but impossible one, such as "0 0 0 0 0", is rightly a 422 with a sentence.
    """
    return [positive_data_acceptance] if path.startswith("/v1/schedules") else []


@pytest.mark.backends("postgres-redis")
@pytest.mark.slow
def test_every_operation_survives_generated_requests(backend: Backend) -> None:
    # Given the API on a real database, and a key with every scope
    with api_server(backend.app) as url:
        auth = {"Authorization": f"Bearer {key(backend.app)}"}
        schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 15

        # When each operation gets generated requests, valid and invalid
        for operation in operations:

            @given(case=operation.as_strategy())
            @settings(max_examples=30, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
            def check(case: schemathesis.Case) -> None:
                # Then no answer is a 500 and each conforms to the schema (status, type, body)
                case.call_and_validate(base_url=url, headers=auth,
                                       excluded_checks=semantic_only(case.operation.path))

            check()
