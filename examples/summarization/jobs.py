"""The summarization service's tables and its two job types: a session's summary, a profile's.

A session's transcript is summarized by the configured summarizer and the summary stored; a
candidate's profile summary is made from the summaries of their sessions. The provider being
away (ProviderUnavailable) is retried after 60, 120 and 240 s; a missing session or a request
the provider refuses fails at once, into the failed-jobs view, from where it can be replayed
(with edited params if the request itself was wrong). Limits: 25 min soft, 30 min hard.

Configuration (environment; the defaults are the write-up's): SUMMARIZATION_BACKOFF (60s,
doubling), SUMMARIZATION_RETRIES (3), SUMMARIZATION_SOFT_LIMIT (25m), SUMMARIZATION_HARD_LIMIT
(30m), SUMMARIZATION_SENTENCES (3), SUMMARIZATION_CALLBACK_URL (the completion webhook when a
request names none), and, to use an OpenAI-compatible provider instead of the offline one,
SUMMARIZATION_LLM_BASE_URL, SUMMARIZATION_LLM_MODEL, SUMMARIZATION_LLM_API_KEY,
SUMMARIZATION_LLM_TIMEOUT (60s).
(No `from __future__ import annotations`: the job functions' annotations are read at run time
for their params schema, and they name module-level types.)
"""

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import Field
from sqlalchemy import Column, DateTime, MetaData, String, Table, Text, Uuid, delete, select
from sqlalchemy.orm import Session

from crisper import Crisper, JobContext, Retry, Settings, StoreUnavailable
from crisper.durations import seconds
from summarization.summarizers import (
    ExtractiveSummarizer,
    OpenAICompatibleSummarizer,
    ProviderUnavailable,
    Summarizer,
)

SESSION = "summarization.summarize_session"
PROFILE = "summarization.summarize_profile"
QUEUE = "summarization"
Id = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
Mode = Annotated[str, Field(pattern=r"^[A-Z_]{1,32}$")]

metadata = MetaData()
sessions = Table(
    "summarization_sessions", metadata,
    Column("id", String(64), primary_key=True),
    Column("candidate_id", String(64), nullable=False, index=True),
    Column("transcript", Text, nullable=False),
)
summaries = Table(
    "summarization_summaries", metadata,
    Column("kind", String(16), primary_key=True),  # session | profile
    Column("subject_id", String(64), primary_key=True),
    Column("mode", String(32), primary_key=True),
    Column("candidate_id", String(64), nullable=False, index=True),
    Column("summary", Text, nullable=False),
    Column("provider", String(32), nullable=False),
    Column("job_id", Uuid(), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)


class SessionNotFound(Exception):
    """No such session for this candidate: replay it with the right ids."""


class NothingToSummarize(Exception):
    """A profile of a candidate with no summarized session yet."""


@dataclass(frozen=True)
class Config:
    backoff: str = "60s"
    retries: int = 3
    soft_limit: str = "25m"
    hard_limit: str = "30m"
    sentences: int = 3
    callback_url: str | None = None
    llm_base_url: str | None = None
    llm_model: str = "gpt-4o-mini"
    llm_api_key: str | None = None
    llm_timeout: str = "60s"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Config":
        """SUMMARIZATION_<FIELD> for each field given; the rest keep their defaults."""
        env = os.environ if env is None else env
        found: dict[str, Any] = {}
        for name, kind in cls.__annotations__.items():
            value = env.get(f"SUMMARIZATION_{name.upper()}")
            if value:
                found[name] = int(value) if kind is int else value
        return cls(**found)

    def summarizer(self) -> Summarizer:
        """The provider when one is configured, else the offline extractive summarizer."""
        if self.llm_base_url:
            return OpenAICompatibleSummarizer(self.llm_base_url, self.llm_model,
                                              self.llm_api_key, seconds(self.llm_timeout))
        return ExtractiveSummarizer()

    def retry(self) -> Retry:
        """60 s, 120 s, 240 s (the write-up's 60 * 2**retries), no jitter, then failed."""
        return Retry(attempts=1 + self.retries, backoff=self.backoff, factor=2.0, jitter=False,
                     max_backoff=seconds(self.backoff) * 2 ** max(self.retries - 1, 0),
                     retry_on=(ProviderUnavailable, StoreUnavailable))


def keep(session: Session, kind: str, subject: str, mode: str, candidate: str, summary: str,
         provider: str, job_id: Any) -> None:
    """The latest summary of a subject replaces the one before."""
    session.execute(delete(summaries).where(summaries.c.kind == kind,
                                            summaries.c.subject_id == subject,
                                            summaries.c.mode == mode))
    session.execute(summaries.insert().values(
        kind=kind, subject_id=subject, mode=mode, candidate_id=candidate, summary=summary,
        provider=provider, job_id=job_id, created_at=datetime.now(UTC)))


def summarize_session(crisper: Crisper, config: Config, summarizer: Summarizer,
                      ctx: JobContext, session_id: str, candidate_id: str, mode: str
                      ) -> dict[str, Any]:
    with crisper.store.read() as s:
        row = s.execute(select(sessions).where(sessions.c.id == session_id,
                                               sessions.c.candidate_id == candidate_id)).first()
    if row is None:
        raise SessionNotFound(f"no session {session_id} of candidate {candidate_id}")
    ctx.progress(0, 1, f"summarizing with {summarizer.name}")
    summary = summarizer.summarize(row.transcript, mode=mode, sentences=config.sentences)
    with crisper.store.transaction() as s:
        keep(s, "session", session_id, mode, candidate_id, summary, summarizer.name,
             ctx.job_id)
    ctx.progress(1, 1, "summarized")
    return {"session_id": session_id, "candidate_id": candidate_id, "mode": mode,
            "summary": summary, "provider": summarizer.name}


def summarize_profile(crisper: Crisper, config: Config, summarizer: Summarizer,
                      ctx: JobContext, candidate_id: str) -> dict[str, Any]:
    with crisper.store.read() as s:
        found = s.scalars(select(summaries.c.summary).where(
            summaries.c.kind == "session", summaries.c.candidate_id == candidate_id)
            .order_by(summaries.c.created_at)).all()
    if not found:
        raise NothingToSummarize(f"candidate {candidate_id} has no summarized session yet")
    summary = summarizer.summarize(" ".join(found), mode="PROFILE",
                                   sentences=config.sentences)
    with crisper.store.transaction() as s:
        keep(s, "profile", candidate_id, "PROFILE", candidate_id, summary, summarizer.name,
             ctx.job_id)
    return {"candidate_id": candidate_id, "sessions": len(found), "summary": summary,
            "provider": summarizer.name}


def build(settings: Settings | None = None, config: Config | None = None) -> Crisper:
    """The service's Crisper app; its tables live in Crisper's database."""
    config = config or Config.from_env()
    app = Crisper("summarization", settings=settings)
    summarizer = config.summarizer()
    options: dict[str, Any] = {"queue": QUEUE, "retry": config.retry(),
                               "timeout": (config.soft_limit, config.hard_limit)}

    def session_summary(ctx: JobContext, session_id: Id, candidate_id: Id,
                        mode: Mode = "SELF_REPORT") -> dict[str, Any]:
        """Summarize one session's transcript."""
        return summarize_session(app, config, summarizer, ctx, session_id, candidate_id, mode)

    def profile_summary(ctx: JobContext, candidate_id: Id) -> dict[str, Any]:
        """Summarize a candidate's profile from their sessions' summaries."""
        return summarize_profile(app, config, summarizer, ctx, candidate_id)

    app.job(name=SESSION, **options)(session_summary)
    app.job(name=PROFILE, **options)(profile_summary)
    return app


crisper = build()
