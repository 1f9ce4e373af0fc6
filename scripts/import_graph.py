"""Print which of Crisper's parts imports which (the table in docs/architecture.md).

Run from the repository root: `python scripts/import_graph.py`. The reader is the one the
layer tests use (tests/unit/test_layers.py), so the document and the checks see one graph.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.unit.test_layers import BASE, cycles, imports_by_part  # noqa: E402


def main() -> None:
    edges = imports_by_part()
    print("| part | imports (Crisper parts) |")
    print("| --- | --- |")
    for part in sorted(edges, key=lambda p: (p not in BASE, p)):
        shown = ", ".join(sorted(edges[part]))
        print(f"| `{part}`{' (base)' if part in BASE else ''} | {shown} |")
    print()
    found = cycles(edges)
    for group in found:
        print(f"Cycle: {', '.join(sorted(group))}")
    if not found:
        print("No cycle.")


if __name__ == "__main__":
    main()
