"""Demo job types (queue `demo`, priority 2): a personalised demo site and video per lead.

The full package is a workflow: the site first, then the screen recording and the voiceover
side by side, then composing, optimising and uploading the video. Each step writes its
artefact under MARKETING_FILES (offline stand-ins: small text files where the real system
renders video) and records it on the demo row; a resumed workflow reruns only what failed.
"""

import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from crisper import Crisper, JobContext
from crisper.workflow_service import WorkflowView
from marketing.kit import Kit
from marketing.tables import demos, leads, now

PREFIX = "demo"
TIMEOUT = "40m"  # the write-up's demo timeout


def demo_workflow(app: Crisper, lead_id: int, session: Session) -> tuple[uuid.UUID,
                                                                         WorkflowView]:
    """A demo row and the workflow that builds it, in the caller's transaction."""
    demo_id = uuid.uuid4()
    session.execute(demos.insert().values(id=demo_id, lead_id=lead_id, status="building",
                                          artifacts={}, created_at=now()))
    p = {"demo_id": str(demo_id)}
    wf = app.workflow(f"demo for lead {lead_id}")
    site = wf.add(f"{PREFIX}.generate_demo_site", p, name="site")
    recording = wf.add(f"{PREFIX}.capture_screen_recording", p, name="recording", after=site)
    voice = wf.add(f"{PREFIX}.generate_voiceover", p, name="voiceover", after=site)
    video = wf.add(f"{PREFIX}.compose_video", p, name="compose", after=[recording, voice])
    small = wf.add(f"{PREFIX}.optimize_video", p, name="optimize", after=video)
    wf.add(f"{PREFIX}.upload_to_hosting", p, name="upload", after=small)
    return demo_id, wf.submit(session=session)


class DemoJobs:
    def __init__(self, kit: Kit) -> None:
        self.app, self.files = kit.app, kit.services.config.files

    def _artifact(self, demo_id: str, kind: str, content: str) -> str:
        """Write one artefact of a demo and record it on the demo's row."""
        folder = self.files / "tmp" / demo_id
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / kind
        path.write_text(content)
        with self.app.store.transaction() as s:
            row = s.execute(select(demos.c.artifacts).where(demos.c.id == uuid.UUID(demo_id))
                            .with_for_update()).one()
            s.execute(update(demos).where(demos.c.id == uuid.UUID(demo_id))
                      .values(artifacts={**row.artifacts, kind: str(path)}))
        return str(path)

    def _read(self, demo_id: str, kind: str) -> str:
        with self.app.store.read() as s:
            got = s.execute(select(demos.c.artifacts)
                            .where(demos.c.id == uuid.UUID(demo_id))).scalar_one()
        return Path(got[kind]).read_text()

    def generate_demo_site(self, ctx: JobContext, demo_id: str) -> dict[str, Any]:
        """A one-page demo site for the demo's lead."""
        with self.app.store.read() as s:
            lead = s.execute(select(leads).join(demos, demos.c.lead_id == leads.c.id)
                             .where(demos.c.id == uuid.UUID(demo_id))).one()
        page = f"<h1>{lead.company}</h1><p>Your new site, {lead.city}.</p>"
        return {"site": self._artifact(demo_id, "site.html", page)}

    def capture_screen_recording(self, ctx: JobContext, demo_id: str) -> dict[str, Any]:
        """A walk through the demo site (stand-in: the pages visited)."""
        site = self._read(demo_id, "site.html")
        return {"recording": self._artifact(demo_id, "recording", f"frames of {site[:60]}")}

    def generate_voiceover(self, ctx: JobContext, demo_id: str,
                           script: str = "Here is what we built for you.") -> dict[str, Any]:
        """Text to speech for the video (stand-in: the script)."""
        return {"voiceover": self._artifact(demo_id, "voiceover", script)}

    def compose_video(self, ctx: JobContext, demo_id: str) -> dict[str, Any]:
        """The recording with the voiceover laid over it."""
        video = self._read(demo_id, "recording") + "\n+ " + self._read(demo_id, "voiceover")
        return {"video": self._artifact(demo_id, "video", video)}

    def optimize_video(self, ctx: JobContext, demo_id: str) -> dict[str, Any]:
        """The video made smaller for the web."""
        return {"web_video": self._artifact(demo_id, "web_video",
                                            " ".join(self._read(demo_id, "video").split()))}

    def upload_to_hosting(self, ctx: JobContext, demo_id: str) -> dict[str, Any]:
        """Publish the site and video (stand-in: a hosting folder) and mark the demo ready."""
        hosted = self.files / "hosting" / demo_id
        hosted.mkdir(parents=True, exist_ok=True)
        for kind in ("site.html", "web_video"):
            shutil.copy(self.files / "tmp" / demo_id / kind, hosted / kind)
        url = (hosted / "site.html").resolve().as_uri()
        with self.app.store.transaction() as s:
            s.execute(update(demos).where(demos.c.id == uuid.UUID(demo_id))
                      .values(status="ready", url=url))
        return {"url": url}

    def create_full_demo_package(self, ctx: JobContext, lead_id: int) -> dict[str, Any]:
        """Start the whole demo workflow for a lead."""
        with self.app.store.transaction() as s:
            demo_id, view = demo_workflow(self.app, lead_id, s)
        return {"demo_id": str(demo_id), "workflow_id": str(view.id)}

    def cleanup_temp_files(self, ctx: JobContext, older_than_hours: float = 24) -> dict[str, Any]:
        """Remove working folders of demos older than the given age."""
        removed = 0
        cutoff = time.time() - older_than_hours * 3600
        for folder in (self.files / "tmp").glob("*"):
            if folder.is_dir() and folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
        return {"removed": removed}

    def generate_demo_analytics(self, ctx: JobContext) -> dict[str, Any]:
        """Demos by status."""
        with self.app.store.read() as s:
            rows = s.execute(select(demos.c.status, func.count()).group_by(demos.c.status))
            return {"demos": dict(rows.tuples().all())}


def register(kit: Kit) -> None:
    jobs = DemoJobs(kit)
    for f in (jobs.generate_demo_site, jobs.capture_screen_recording, jobs.generate_voiceover,
              jobs.compose_video, jobs.optimize_video, jobs.upload_to_hosting,
              jobs.create_full_demo_package, jobs.cleanup_temp_files,
              jobs.generate_demo_analytics):
        kit.define(PREFIX, "demo", f, TIMEOUT)
