"""Benchmarks: Crisper against plain Celery on the same machine and broker."""
