"""The import rules between Crisper's parts, read from the source (type-checking imports too).

The base (errors, states, records, durations, names, …) imports nothing above it; the store
imports only the base; a remote caller's `import crisper.client` loads no database or broker
library. The app (crisper/app.py) assembles the parts; only the adapters above it (API, CLI,
dashboard, contrib, testing, loading, the package itself) import it. The services, the
maintenance units, the engine, flow control, the registry and adoption take their
collaborators explicitly (a job type gets its app's submit and Celery calls as functions),
so the graph between parts has no cycle at all: any cycle fails here.
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


# The adapters and the assembler: the only parts that may import the app.
ABOVE_THE_APP = {"app", "crisper", "__main__", "api", "cli", "dashboard", "contrib", "testing",
                 "loading"}
# Cycles allowed between parts: none.
KNOWN_CYCLE: set[str] = set()


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


def cycles(edges: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected groups of more than one part (Tarjan), each a cycle or several."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[set[str]] = []

    def visit(part: str) -> None:
        index[part] = low[part] = len(index)
        stack.append(part)
        for other in sorted(edges.get(part, ())):
            if other not in index:
                visit(other)
                low[part] = min(low[part], low[other])
            elif other in stack:
                low[part] = min(low[part], index[other])
        if low[part] == index[part]:
            group = set()
            while not group or part not in group:
                group.add(stack.pop())
            if len(group) > 1:
                found.append(group)

    for part in sorted(edges):
        if part not in index:
            visit(part)
    return found


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


def test_only_the_adapters_import_the_app() -> None:
    edges = imports_by_part()
    holders = {part for part, imported in edges.items() if "app" in imported}
    assert sorted(holders - ABOVE_THE_APP) == []


def test_services_maintenance_engine_and_flow_take_their_collaborators() -> None:
    """None of them reaches the app, even for a type: each gets what it uses."""
    edges = imports_by_part()
    parts = {"service", "workflow_service", "workflows", "batches", "webhooks", "schedules",
             "keys", "reads", "monitor", "insights", "watch", "maintenance", "engine", "flow",
             "registry", "adoption", "handle", "canvas", "group_commit"}
    assert sorted(p for p in parts if "app" in edges[p]) == []


def test_the_dashboard_does_not_import_the_api() -> None:
    assert "api" not in imports_by_part()["dashboard"]


def test_no_cycle() -> None:
    found = cycles(imports_by_part())
    assert [sorted(c) for c in found if not c <= KNOWN_CYCLE] == []


def test_the_registry_sits_below_the_services() -> None:
    """Job types reach their app only through the functions it binds: the registry imports
    neither the services nor adoption, and a handle knows only the actions it calls."""
    edges = imports_by_part()
    assert sorted(edges["registry"] & {"service", "adoption", "engine", "schedules"}) == []
    assert sorted(edges["handle"] - BASE) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    """A cycle made on purpose is found, so an empty answer above is not a blind one."""
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(edges) == [{"a", "b", "c"}]
