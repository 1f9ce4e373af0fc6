"""The run book: each maintenance loop records when it last ran each maintenance unit, for users.

Written at most once per NOTE_EVERY seconds per unit, so fast units cost little.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from crisper.errors import CrisperError
from crisper.store import Store, utcnow
from crisper.store import schedules as schedule_sql

if TYPE_CHECKING:
    from crisper.maintenance.loop import Unit

log = logging.getLogger(__name__)
NOTE_EVERY = 30.0


def this_process() -> str:
    """Who ran a unit, as the run book records it: host and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"


class RunBook:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.by = this_process()
        self._noted: dict[str, float] = {}

    def note(self, units: Sequence[Unit], done: dict[str, int]) -> None:
        """Record the units that just ran (and are due a note)."""
        now = time.monotonic()
        todo = [u for u in units if u.name in done
                and now - self._noted.get(u.name, float("-inf")) >= NOTE_EVERY]
        if not todo:
            return
        try:
            with self.store.transaction() as session:
                at = utcnow()
                for unit in todo:
                    schedule_sql.note_run(session, unit.name, unit.every, at, done[unit.name],
                                          self.by)
        except CrisperError as exc:
            log.warning("maintenance runs not recorded: %s", exc)
            return
        for unit in todo:
            self._noted[unit.name] = now
