"""The summarization example's summarizers and configuration: the extractive default (pure),
and how the OpenAI-compatible provider's answers are told apart (a local HTTP server)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from summarization.jobs import Config
from summarization.summarizers import (
    ExtractiveSummarizer,
    OpenAICompatibleSummarizer,
    ProviderRejected,
    ProviderUnavailable,
)

from crisper.embedded import free_port

TEXT = ("Rust ownership rules prevent data races. I had coffee. Ownership and borrowing make "
        "the rules checkable. The rules are enforced at compile time. It rained.")


def test_the_extractive_summary_keeps_the_central_sentences_in_their_order() -> None:
    got = ExtractiveSummarizer().summarize(TEXT, mode="SELF_REPORT", sentences=2)
    assert got == ("Rust ownership rules prevent data races. Ownership and borrowing make the "
                   "rules checkable.")
    short = "One sentence only."
    assert ExtractiveSummarizer().summarize(short, mode="X", sentences=3) == short


def test_configuration_comes_from_the_environment_with_the_write_ups_defaults() -> None:
    default = Config.from_env({})
    assert (default.backoff, default.retries, default.soft_limit, default.hard_limit) == (
        "60s", 3, "25m", "30m")
    assert isinstance(default.summarizer(), ExtractiveSummarizer)
    policy = default.retry()
    assert (policy.attempts, policy.factor, policy.jitter, policy.max_backoff) == (4, 2.0,
                                                                                   False, 240.0)
    scaled = Config.from_env({"SUMMARIZATION_BACKOFF": "0.5s", "SUMMARIZATION_RETRIES": "2",
                              "SUMMARIZATION_LLM_BASE_URL": "http://llm.local/v1"})
    assert (scaled.backoff, scaled.retries) == ("0.5s", 2)
    assert isinstance(scaled.summarizer(), OpenAICompatibleSummarizer)


@contextmanager
def answering(status: int, body: bytes) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.parametrize(("status", "body", "raised"), [
    (503, b"", ProviderUnavailable),
    (429, b"slow down", ProviderUnavailable),
    (401, b'{"error": "bad key"}', ProviderRejected),
    (200, b"not json", ProviderRejected),
    (200, b'{"choices": []}', ProviderRejected),
    (200, b'{"choices": [{"message": {"content": "  "}}]}', ProviderRejected),
])
def test_provider_answers_are_transient_or_final(status: int, body: bytes,
                                                 raised: type[Exception]) -> None:
    with answering(status, body) as url, pytest.raises(raised):
        OpenAICompatibleSummarizer(url, "m", timeout=5).summarize(TEXT, mode="X", sentences=2)


def test_a_provider_that_is_not_there_is_transient() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(ProviderUnavailable, match="ConnectError"):
        OpenAICompatibleSummarizer(url, "m", timeout=2).summarize(TEXT, mode="X", sentences=2)


def test_a_provider_summary_is_used() -> None:
    with answering(200, b'{"choices": [{"message": {"content": " Short. "}}]}') as url:
        got = OpenAICompatibleSummarizer(url, "m", "k").summarize(TEXT, mode="X", sentences=2)
    assert got == "Short."
