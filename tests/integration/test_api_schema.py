"""Property-based fuzzing of the whole OpenAPI schema: no 500s, every answer matches the schema."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from tests.api_support import api_server, key
from tests.harness import Backend


def semantic_only(path: str) -> list[Any]:
    """Checks not to run on an operation whose input has rules no JSON Schema can state.

    A cron expression's grammar (ranges per field, names, steps) is checked by the server:
    a schema-valid but impossible one, such as "0 0 0 0 0", is rightly a 422 with a sentence.
    """
    return [positive_data_acceptance] if path.startswith("/v1/schedules") else []


def lenient_only(mode: GenerationMode) -> list[Any]:
    """Checks not to run on invalid requests: unknown query parameters are ignored, as most
    HTTP APIs do (a cache-buster must not fail a request), and schemathesis counts those as
    invalid data accepted. Invalid requests must still get no 500 and a documented answer.
    """
    return [negative_data_rejection] if mode is GenerationMode.NEGATIVE else []


@pytest.mark.backends("postgres-redis")
@pytest.mark.slow
def test_every_operation_survives_generated_requests(backend: Backend) -> None:
    # Given the API on a real database, and a key with every scope
    with api_server(backend.app) as url:
        auth = {"Authorization": f"Bearer {key(backend.app)}"}
        schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        documented = {(m, p) for p, ops in backend_openapi(url).items() for m in ops}
        assert {(o.method.lower(), o.path) for o in operations} == documented
        assert len(operations) >= 15

        # When each operation gets generated requests, valid and invalid (a bounded number:
        # EXAMPLES per operation and mode keeps the whole run under a minute)
        for operation in operations:
            for mode, examples in EXAMPLES.items():
                try:
                    fuzz(operation, mode, examples, url, auth)
                except Unsatisfiable:  # nothing to make invalid: no parameters, no body
                    assert mode is GenerationMode.NEGATIVE, operation.label


def fuzz(operation: Any, mode: GenerationMode, examples: int, url: str,
         auth: dict[str, str]) -> None:
    excluded = semantic_only(operation.path) + lenient_only(mode)

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def check(case: schemathesis.Case) -> None:
        # Then no answer is a 500 and each conforms to the schema (status, type, body), and
        # valid requests are accepted (a generated Authorization header, where one is
        # documented, is kept)
        given_auth = {k: v for k, v in (case.headers or {}).items()
                      if k.lower() == "authorization"}
        case.call_and_validate(base_url=url, headers={**auth, **given_auth},
                               excluded_checks=excluded)

    check()


EXAMPLES = {GenerationMode.POSITIVE: 25, GenerationMode.NEGATIVE: 15}


def backend_openapi(url: str) -> dict[str, Any]:
    paths: dict[str, Any] = httpx.get(f"{url}/openapi.json", timeout=30).json()["paths"]
    return paths
