"""A test app with the built-in job types: a product CSV import and two batch mailings.

Workers load it with CRISPER_APP=tests.apps.contribapp; the import folder is PROBE_DIR/imports
and the SMTP server's port CONTRIB_SMTP_PORT (the tests start both).
"""

from __future__ import annotations

import os
from pathlib import Path

from bench.apps.products import ProductRow
from crisper import Crisper, Settings
from crisper.contrib.batch_email import SmtpServer, batch_email
from crisper.contrib.csv_import import csv_import

CHUNK_ROWS = 1000
MAIL_RATE = "5/s"  # scaled down from the seeds' 50/min
MAIL_BURST = 2
BACKOFF = 0.2


def build(settings: Settings | None = None, folder: Path | None = None) -> Crisper:
    app = Crisper("contribtest", settings=settings)
    folder = folder or Path(os.environ.get("PROBE_DIR", ".")) / "imports"
    csv_import(app, name="contrib.import_products", model=ProductRow, table="products",
               key=("sku",), folder=folder, queue="imports", chunk_rows=CHUNK_ROWS)
    mail = app.rate_limit("mail", MAIL_RATE, burst=MAIL_BURST)
    server = SmtpServer("127.0.0.1", int(os.environ.get("CONTRIB_SMTP_PORT", "2525")),
                        timeout=10)
    batch_email(app, name="contrib.newsletter", server=server, sender="news@shop.example",
                subject="News for $name", text="Hello $name,\n$offer\n",
                html="<p>Hello $name,</p><p>$offer</p>", rate_limit=mail, queue="email",
                attempts=3, backoff=BACKOFF)
    batch_email(app, name="contrib.reminder", server=server, sender="news@shop.example",
                subject="Reminder", text="Your basket is waiting.\n", rate_limit=mail,
                queue="email", attempts=3, backoff=BACKOFF)
    return app


crisper = build()
