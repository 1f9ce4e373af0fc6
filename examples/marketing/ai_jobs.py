"""AI job types (queue `ai`, priority 6): lead analysis and scoring, writing, extraction.

The model is an interface (services.Assistant): rules offline (TEST_MODE), an
OpenAI-compatible endpoint when configured. Scores and the conversion model are plain
arithmetic over the stored leads, so they are the same whichever model writes the prose.
"""

import re
from typing import Any

from sqlalchemy import select, update

from crisper import JobContext, SubmitRequest
from marketing.campaign_jobs import save_figure
from marketing.kit import Kit
from marketing.tables import figures, leads

PREFIX = "ai"
TIMEOUT = "4m"  # the write-up's AI timeout
MODEL_KEY = "model:conversion"
EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
PHONE = re.compile(r"\+?\d[\d ()-]{7,}\d")
URL = re.compile(r"https?://[^\s,;]+")


def score(lead: Any) -> float:
    """0..1: listed by more sources, a company address rather than a free mailbox."""
    free = lead.email.endswith(("@gmail.com", "@yahoo.com", "@hotmail.com"))
    return round(min(1.0, 0.25 * len(lead.sources) + (0.0 if free else 0.3)), 3)


class AiJobs:
    def __init__(self, kit: Kit) -> None:
        self.app, self.assistant = kit.app, kit.services.assistant

    def _lead(self, lead_id: int) -> Any:
        with self.app.store.read() as s:
            return s.execute(select(leads).where(leads.c.id == lead_id)).one()

    def generate_ai_response(self, ctx: JobContext, prompt: str) -> dict[str, Any]:
        """The model's answer to a free prompt."""
        return {"answer": self.assistant.complete("Answer briefly", prompt)}

    def analyze_lead(self, ctx: JobContext, lead_id: int) -> dict[str, Any]:
        """Score a lead and describe it; both stored on the lead."""
        lead = self._lead(lead_id)
        value = score(lead)
        text = self.assistant.complete(
            "Describe this business as a sales lead",
            f"{lead.company} in {lead.city}, listed on {', '.join(lead.sources)}.")
        with self.app.store.transaction() as s:
            s.execute(update(leads).where(leads.c.id == lead_id)
                      .values(score=value, analysis=text))
        return {"lead_id": lead_id, "score": value, "analysis": text}

    def process_conversation(self, ctx: JobContext, messages: list[str]) -> dict[str, Any]:
        """A reply to the last message of a thread, given the thread."""
        thread = "\n".join(messages[-20:])
        return {"reply": self.assistant.complete("Reply to the last message politely",
                                                 thread)}

    def batch_analyze_leads(self, ctx: JobContext, lead_ids: list[int] | None = None
                            ) -> dict[str, Any]:
        """One analyze_lead job per lead (every unscored lead if none given)."""
        if lead_ids is None:
            with self.app.store.read() as s:
                lead_ids = list(s.scalars(select(leads.c.id).where(leads.c.score.is_(None))))
        made = self.app.submit_many([SubmitRequest(f"{PREFIX}.analyze_lead", {"lead_id": i})
                                     for i in lead_ids])
        return {"jobs": [str(j.id) for j in made]}

    def generate_email_content(self, ctx: JobContext, lead_id: int,
                               goal: str = "book a demo") -> dict[str, Any]:
        """A personalised subject and body for one lead."""
        lead = self._lead(lead_id)
        body = self.assistant.complete(f"Write a short sales e-mail to {goal}",
                                       f"To {lead.name} of {lead.company}, {lead.city}.")
        return {"subject": f"{lead.company}: an idea for {lead.city}", "body": body}

    def predict_lead_conversion(self, ctx: JobContext, lead_id: int) -> dict[str, Any]:
        """Probability that a lead converts: the trained per-source rates, else its score."""
        lead = self._lead(lead_id)
        with self.app.store.read() as s:
            model = s.scalar(select(figures.c.data).where(figures.c.key == MODEL_KEY)) or {}
        rates = [model[src] for src in lead.sources if src in model]
        base = sum(rates) / len(rates) if rates else (lead.score or score(lead))
        return {"lead_id": lead_id, "probability": round(base, 3)}

    def train_ml_model(self, ctx: JobContext) -> dict[str, Any]:
        """Per-source mean score of the analysed leads: the conversion model, stored."""
        with self.app.store.read() as s:
            rows = s.execute(select(leads.c.sources, leads.c.score)
                             .where(leads.c.score.is_not(None))).all()
        sums: dict[str, list[float]] = {}
        for sources, value in rows:
            for src in sources:
                sums.setdefault(src, []).append(value)
        model = {src: round(sum(v) / len(v), 3) for src, v in sums.items()}
        with self.app.store.transaction() as s:
            save_figure(s, MODEL_KEY, model)
        return {"trained_on": len(rows), "model": model}

    def extract_lead_info(self, ctx: JobContext, text: str) -> dict[str, Any]:
        """E-mail addresses, phone numbers and web addresses found in a text."""
        return {"emails": sorted(set(EMAIL.findall(text))),
                "phones": sorted(set(PHONE.findall(text))), "urls": sorted(set(URL.findall(text)))}


def register(kit: Kit) -> None:
    jobs = AiJobs(kit)
    for f in (jobs.generate_ai_response, jobs.analyze_lead, jobs.process_conversation,
              jobs.batch_analyze_leads, jobs.generate_email_content,
              jobs.predict_lead_conversion, jobs.train_ml_model, jobs.extract_lead_info):
        kit.define(PREFIX, "ai", f, TIMEOUT)
