"""The import rules between Crisper's parts, read from the source (type-checking imports too).

The base (errors, states, records, durations, names, …) imports nothing above it; the store
imports only the base; a remote caller's `import crisper.client` loads no database or broker
library. Parts above the store still form one cycle around the app (issue #12 item 1); rules
are added here as that cycle is cut.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "crisper"
BASE = {"errors", "states", "records", "durations", "names", "ids", "metadata", "waiting", "cron",
        "retry", "retention", "webhook_events"}


def part_of(module: str) -> str:
    """`crisper.store.jobs` → `store`; `crisper.errors` → `errors`; `crisper` → `crisper`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "crisper"


def _from_package(name: str) -> str:
    """`from crisper import X`: a submodule's name, or a name the package itself exports."""
    is_module = (ROOT / name).is_dir() or (ROOT / f"{name}.py").exists()
    return f"crisper.{name}" if is_module else "crisper"


def imports_by_part() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = defaultdict(set)
    for path in ROOT.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        relative = path.relative_to(ROOT.parent).with_suffix("")
        source = part_of(".".join(p for p in relative.parts if p != "__init__"))
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = ([_from_package(a.name) for a in node.names]
                         if node.module == "crisper" else [node.module])
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                if (name == "crisper" or name.startswith("crisper.")) and part_of(name) != source:
                    edges[source].add(part_of(name))
    return edges


def test_the_base_imports_only_the_base() -> None:
    edges = imports_by_part()
    above = {part: sorted(edges[part] - BASE) for part in BASE if edges[part] - BASE}
    assert above == {}


def test_the_store_imports_only_the_base() -> None:
    assert sorted(imports_by_part()["store"] - BASE) == []


def test_the_client_imports_only_the_base() -> None:
    assert sorted(imports_by_part()["client"] - BASE) == []


def test_a_remote_caller_loads_no_database_or_broker_library() -> None:
    probe = ("import sys, crisper.client\n"
             "print(sorted(m for m in ('sqlalchemy', 'celery', 'kombu', 'fastapi', 'psycopg')"
             " if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=True).stdout.strip()
    assert loaded == "[]"


def test_the_rules_see_real_imports() -> None:
    """The reader finds known edges, so an empty answer above is not a blind one."""
    edges = imports_by_part()
    assert {"errors", "states"} <= edges["store"]
    assert "store" in edges["service"]
