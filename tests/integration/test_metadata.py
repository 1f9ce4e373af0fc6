"""Searchable metadata: validated on submit, filtered by exact match from Python and HTTP."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest

from crisper.errors import InvalidRequest
from tests.api_support import api_server, key
from tests.harness import ROOT, Backend


def test_jobs_are_found_by_exact_metadata_from_python_and_http(backend: Backend) -> None:
    # Given held jobs carrying metadata, one with LIKE wildcards in its value
    app = backend.app
    eu_acme = app.submit("probe.noop", hold=True, tenant="acme",
                         metadata={"customer": "acme", "region": "eu"})
    us_acme = app.submit("probe.noop", hold=True, tenant="acme",
                         metadata={"customer": "acme", "region": "us"})
    wild = app.submit("probe.noop", hold=True, tenant="acme", metadata={"customer": "a%_e"})
    app.submit("probe.noop", hold=True, tenant="acme")

    # When Python filters by one pair, by two, and by a value that would be a LIKE pattern
    one = {j.id for j in app.list_jobs(metadata={"customer": "acme"}, tenant="acme").items}
    two = [j.id for j in app.list_jobs(metadata={"customer": "acme", "region": "eu"}).items]
    pattern = [j.id for j in app.list_jobs(metadata={"customer": "a%_e"}).items]
    missing = app.list_jobs(metadata={"customer": "acm"}).items

    # Then each match is exact: every pair, the whole value, never a pattern
    assert one == {eu_acme.id, us_acme.id} and two == [eu_acme.id]
    assert pattern == [wild.id] and missing == []
    assert app.jobs.get(eu_acme.id).metadata == {"customer": "acme", "region": "eu"}
    assert app.count_jobs(metadata={"region": "us"})[us_acme.state] == 1

    # And HTTP submits and filters the same way (repeated ?meta=key:value must all match)
    with api_server(app) as url:
        http = httpx.Client(base_url=url, timeout=30,
                            headers={"Authorization": f"Bearer {key(app, tenant='acme')}"})
        made = http.post("/v1/jobs", json={"type": "probe.noop", "hold": True,
                                           "metadata": {"customer": "acme", "region": "eu"}})
        found = http.get("/v1/jobs", params=[("meta", "customer:acme"), ("meta", "region:eu")])
        bad_filter = http.get("/v1/jobs", params={"meta": "no-separator"})
        too_many = http.post("/v1/jobs", json={"type": "probe.noop", "hold": True, "metadata": {
            f"k{i}": "v" for i in range(17)}})
        http.close()
    assert made.status_code == 202 and made.json()["metadata"]["region"] == "eu"
    assert [j["id"] for j in found.json()["items"]] == [made.json()["id"], str(eu_acme.id)]
    assert bad_filter.status_code == 422 and "key:value" in bad_filter.text
    assert too_many.status_code == 422 and "16" in too_many.text


@pytest.mark.parametrize(("metadata", "where"), [
    ({"n": 1}, "metadata.n"), ({"bad key": "x"}, "metadata"), ({"k": "x" * 201}, "metadata.k"),
    ({"k": "nul\x00"}, "metadata.k"), ({f"k{i}": "v" for i in range(17)}, "metadata")])
def test_bad_metadata_is_refused_naming_the_field(backend: Backend, metadata: object,
                                                  where: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        backend.app.submit("probe.noop", hold=True, metadata=metadata)
    assert refused.value.field == where


def test_the_cli_lists_by_tag_and_metadata_locally_and_over_http(backend: Backend) -> None:
    # Given tagged jobs with metadata, of one tenant
    app = backend.app
    hit = app.submit("probe.noop", hold=True, tenant="acme", tags=["vip"],
                     metadata={"customer": "acme"})
    app.submit("probe.noop", hold=True, tenant="acme", tags=["vip"], metadata={"customer": "x"})
    app.submit("probe.noop", hold=True, tenant="acme", metadata={"customer": "acme"})
    env = backend.process_env()

    def ls(*args: str, **extra: str) -> list[str]:
        done = subprocess.run([sys.executable, "-m", "crisper", "jobs", "ls", "--json", *args],
                              cwd=ROOT, env={**env, **extra}, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, done.stderr
        return [j["id"] for j in json.loads(done.stdout)]

    # When the CLI lists by tag and metadata, on the database and through the API
    local = ls("--tag", "vip", "--meta", "customer=acme")
    with api_server(app) as url:
        remote = ls("--tag", "vip", "--meta", "customer=acme", CRISPER_URL=url,
                    CRISPER_API_KEY=key(app, tenant="acme"))

    # Then both find exactly the job with the tag and the pair
    assert local == remote == [str(hit.id)]
    bad = subprocess.run([sys.executable, "-m", "crisper", "jobs", "ls", "--meta", "nokey"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "key=value" in bad.stderr + bad.stdout
