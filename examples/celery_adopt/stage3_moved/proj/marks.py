"""Each task body notes that it ran to its end, so the tests can count runs."""

import os


def mark(line: str) -> None:
    path = os.environ.get("PROJ_MARKS")
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


def marked(line: str) -> bool:
    path = os.environ.get("PROJ_MARKS")
    if not path or not os.path.exists(path):
        return False
    with open(path) as f:
        return line + "\n" in f.readlines()
