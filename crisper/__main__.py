"""`python -m crisper` is the `crisper` command."""

from crisper.cli import main

main()
