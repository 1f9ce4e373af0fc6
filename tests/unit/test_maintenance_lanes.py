"""The maintenance loop's lanes keep turning whatever the store answers them between turns."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from crisper import Crisper, Settings

LANE_THREADS = {"crisper-broker", "crisper-store", "crisper-webhooks"}


def test_the_store_lane_goes_on_when_looking_for_the_next_timer_fails(tmp_path: Path) -> None:
    # Given an app whose database has no tables: every look for the next timer fails with an
    # error that is not an outage (no such table)
    app = Crisper("lanes", settings=Settings(database_url=f"sqlite:///{tmp_path / 'empty.db'}",
                                             tick_seconds=0.1))
    loop, stop = app.maintenance_loop(), threading.Event()
    runner = threading.Thread(target=loop.run, args=(stop,), daemon=True)
    others = set(threading.enumerate())  # other tests' threads may share this process

    # When the loop runs for several of its ticks
    runner.start()
    time.sleep(1.0)
    lanes = sorted(t.name for t in set(threading.enumerate()) - others
                   if t.name in LANE_THREADS)
    stop.set()
    runner.join(timeout=10)

    # Then every lane is still turning, and all of them end when told
    assert lanes == ["crisper-broker", "crisper-store", "crisper-webhooks"]
    assert not runner.is_alive()
    app.store.close()
