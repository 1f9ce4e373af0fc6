"""Summarizers: an offline extractive default, and an OpenAI-compatible provider when configured.

Both answer `summarize(text, mode=..., sentences=...)`. The provider's failures are split in
two: `ProviderUnavailable` (a network error, a timeout, 5xx, 429) is worth the job's back-off;
`ProviderRejected` (a 4xx such as a bad key, an answer without a summary) is not.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

import httpx

SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
WORD = re.compile(r"[a-zA-Z][a-zA-Z'-]+")
STOPWORDS = frozenset(re.findall(r"\w+", """
    a an and are as at be but by for from had has have he her his i in is it its me my of on
    or our she so that the their them they this to was we were what when which who will with
    you your not do did just very really also about there then than"""))


class Summarizer(Protocol):
    name: str

    def summarize(self, text: str, *, mode: str, sentences: int) -> str: ...


class ProviderUnavailable(Exception):
    """The provider could not answer now; the job backs off and tries again."""


class ProviderRejected(Exception):
    """The provider refused the request or answered nonsense; trying again will not help."""


class ExtractiveSummarizer:
    """The offline default: the sentences whose content words are the text's most frequent,
    in their original order. No network, no model, the same answer every time."""

    name = "extractive"

    def summarize(self, text: str, *, mode: str, sentences: int) -> str:
        found = [s.strip() for s in SENTENCE_END.split(text.strip()) if s.strip()]
        if len(found) <= sentences:
            return " ".join(found)
        freq = Counter(w for s in found for w in _words(s))

        def score(index: int) -> float:
            words = _words(found[index])
            return sum(freq[w] for w in words) / (len(words) ** 0.5 or 1.0)

        best = sorted(range(len(found)), key=lambda i: (-score(i), i))[:sentences]
        return " ".join(found[i] for i in sorted(best))


def _words(sentence: str) -> list[str]:
    return [w for w in (m.lower() for m in WORD.findall(sentence)) if w not in STOPWORDS]


@dataclass
class OpenAICompatibleSummarizer:
    """A chat-completions endpoint (OpenAI, or any server speaking its API: vLLM, Ollama,
    LiteLLM...), called with httpx. `base_url` ends before /chat/completions."""

    base_url: str
    model: str
    api_key: str | None = field(default=None, repr=False)
    timeout: float = 60.0
    name: str = "openai-compatible"

    def summarize(self, text: str, *, mode: str, sentences: int) -> str:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        body = {"model": self.model, "temperature": 0.2, "messages": [
            {"role": "system", "content": f"Summarize the {mode.lower().replace('_', ' ')} "
                                          f"transcript in at most {sentences} sentences."},
            {"role": "user", "content": text}]}
        try:
            response = httpx.post(f"{self.base_url.rstrip('/')}/chat/completions", json=body,
                                  headers=headers, timeout=self.timeout)
        except httpx.TransportError as exc:
            raise ProviderUnavailable(f"{type(exc).__name__}: {exc}") from None
        if response.status_code >= 500 or response.status_code == 429:
            raise ProviderUnavailable(f"the provider answered {response.status_code}")
        if not response.is_success:
            raise ProviderRejected(f"the provider answered {response.status_code}: "
                                   f"{response.text[:200]}")
        try:
            summary = response.json()["choices"][0]["message"]["content"]
        except (ValueError, LookupError, TypeError):
            raise ProviderRejected("the provider's answer holds no summary") from None
        if not isinstance(summary, str) or not summary.strip():
            raise ProviderRejected("the provider's answer holds no summary")
        return summary.strip()
