"""The summarization example's summarizers and configuration: the extractive default (pure),
and how the OpenAI-compatible provider's answers are told apart (a local HTTP server)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from summarization.jobs import Config
from summarization.summarizers import (
    ExtractiveSummarizer,
    OpenAICompatibleSummarizer,
    ProviderRejected,
    ProviderUnavailable,
)

from crisper.embedded import free_port
from tests.receiver import serving

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
    with serving(lambda _path, _headers, _body: (status, body)) as url:
        yield url + "/v1"


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
