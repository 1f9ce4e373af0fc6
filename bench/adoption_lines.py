"""Lines changed in examples/celery_adopt at each stage of adopting Crisper.

Run from the repository root:  .venv/bin/python -m bench.adoption_lines [--json PATH]

Each stage is a full copy of the project (stage1_plain, stage2_wrapped, stage3_moved); this
compares each stage with the one before it, file by file, and counts the lines added and
removed (a changed line counts once each way, as `git diff --stat` does), and how many tasks
were moved. The callers (examples/celery_adopt/callers.py) are shared by every stage: 0 lines.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "celery_adopt"
STAGES = ("stage1_plain", "stage2_wrapped", "stage3_moved")
CELERY_TASK = re.compile(r"^@app\.task\b", re.M)
CRISPER_JOB = re.compile(r"^@crisper\.job\b", re.M)


def sources(stage: str) -> dict[str, list[str]]:
    root = EXAMPLE / stage
    return {str(p.relative_to(root)): p.read_text().splitlines()
            for p in sorted(root.rglob("*.py"))}


def changed(before: dict[str, list[str]], after: dict[str, list[str]]) -> dict[str, object]:
    """Lines added and removed between two copies of the project, and the files touched."""
    added = removed = 0
    files = []
    for name in sorted(set(before) | set(after)):
        diff = [line for line in difflib.unified_diff(before.get(name, []), after.get(name, []),
                                                      lineterm="", n=0)
                if not line.startswith(("---", "+++", "@@"))]
        plus = sum(1 for line in diff if line.startswith("+"))
        minus = sum(1 for line in diff if line.startswith("-"))
        if plus or minus:
            files.append(name)
        added, removed = added + plus, removed + minus
    return {"added": added, "removed": removed, "files": files}


def tasks(stage: dict[str, list[str]]) -> tuple[int, int]:
    text = "\n".join("\n".join(lines) for lines in stage.values())
    return len(CELERY_TASK.findall(text)), len(CRISPER_JOB.findall(text))


def measure() -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    previous: dict[str, list[str]] | None = None
    for stage in STAGES:
        now = sources(stage)
        celery_tasks, crisper_jobs = tasks(now)
        row: dict[str, object] = {"stage": stage, "celery_tasks": celery_tasks,
                                  "crisper_jobs": crisper_jobs,
                                  "lines": sum(len(v) for v in now.values())}
        if previous is not None:
            row.update(changed(previous, now))
        rows.append(row)
        previous = now
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    rows = measure()
    print(f"{'stage':16} {'@app.task':>9} {'@crisper.job':>12} {'+lines':>7} {'-lines':>7}  files")
    for r in rows:
        print(f"{r['stage']!s:16} {r['celery_tasks']!s:>9} {r['crisper_jobs']!s:>12} "
              f"{r.get('added', '-')!s:>7} {r.get('removed', '-')!s:>7}  "
              f"{', '.join(r.get('files', [])) if isinstance(r.get('files'), list) else ''}")
    print("callers.py: shared by every stage, 0 lines changed")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
