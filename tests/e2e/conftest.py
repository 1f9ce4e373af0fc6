"""Fixtures for browser tests: Debian's Chromium driven by Playwright (never a downloaded one).

Without the browser (or Playwright) the tests skip and say why; under CI=true they fail,
because CI must run them (scripts/test.sh installs chromium when it runs as root).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.api_support import api_server, key
from tests.conftest import IN_CI
from tests.harness import Backend

TENANT = "acme"

CHROMIUM = os.environ.get("CRISPER_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[test]')"
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium, or set CRISPER_CHROMIUM)"
    return None


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Chromium for the session; each test opens its own context (cookies)."""
    reason = _missing()
    if reason:
        if IN_CI:
            pytest.fail(f"{reason}; CI must run the browser tests")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    """Where screenshots go: docs/screenshots when CRISPER_SCREENSHOTS says so, else tmp."""
    target = os.environ.get("CRISPER_SCREENSHOTS")
    folder = Path(target) if target else tmp_path / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class Site:
    """A running API server with its dashboard, and logged-in browser pages to drive it."""

    def __init__(self, backend: Backend, root: str, browser: Any) -> None:
        self.backend = backend
        self.root = root
        self.url = f"{root}/dashboard"
        self.browser = browser
        self.contexts: list[Any] = []

    def key(self, scopes: str = "read,write,admin", tenant: str = TENANT) -> str:
        return key(self.backend.app, tenant, scopes)

    def page(self, secret: str | None = None, width: int = 1280, height: int = 860) -> Any:
        """A fresh browser (own cookies) logged in with `secret`; confirmations are accepted."""
        context = self.browser.new_context(viewport={"width": width, "height": height})
        context.set_default_timeout(15_000)
        self.contexts.append(context)
        page = context.new_page()
        page.on("dialog", lambda dialog: dialog.accept())
        if secret is not None:
            page.goto(f"{self.url}/login")
            page.fill("#key", secret)
            page.click("button[type=submit]")
            page.wait_for_url(f"{self.url}/")
        return page

    def close(self) -> None:
        for context in self.contexts:
            context.close()


@pytest.fixture
def site(backend: Backend, browser: Any) -> Iterator[Site]:
    """The API (and dashboard) on uvicorn over the test backend; pages close afterwards."""
    with api_server(backend.app) as root:
        s = Site(backend, root, browser)
        try:
            yield s
        finally:
            s.close()
