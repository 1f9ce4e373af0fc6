"""What writes the activities: a generator behind a small interface, and an offline default.

The write-up's system asked OpenAI for three activities shaped by a team's requirements; the
offline generator here builds them from templates, so the example runs without a network or a
key. Another generator only has to return three Activity values or raise GenerationError.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Protocol

FORMATS = ("workshop", "retrospective", "offsite challenge", "lunch-and-learn", "hackathon",
           "peer-coaching circle")
LENGTHS = (30, 45, 60, 90, 120)


class GenerationError(Exception):
    """The requirements give the generator nothing to work with: a retry will not help."""


@dataclass(frozen=True)
class Activity:
    title: str
    description: str
    minutes: int


class Generator(Protocol):
    def generate(self, team_id: str, requirements: str) -> list[Activity]:
        """Three activities for the team, shaped by its requirements."""
        ...


class OfflineGenerator:
    """Three activities from templates, picked by the requirements' words (deterministic)."""

    def generate(self, team_id: str, requirements: str) -> list[Activity]:
        words = [w.lower() for w in re.findall(r"[A-Za-z]{3,}", requirements)]
        if not words:
            raise GenerationError("the requirements name nothing to build activities on")
        topic = max(words, key=len)
        seed = int.from_bytes(hashlib.sha256(f"{team_id}:{requirements}".encode()).digest()[:8])
        found = []
        for i in range(3):
            form = FORMATS[(seed + i) % len(FORMATS)]
            minutes = LENGTHS[(seed // 7 + i) % len(LENGTHS)]
            found.append(Activity(f"{topic.capitalize()} {form}",
                                  f"A {minutes}-minute {form} on {topic}, for team {team_id}, "
                                  f"built around: {requirements[:200]}", minutes))
        return found
