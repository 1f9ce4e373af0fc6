"""A tiny Django project for the Django integration tests (settings, jobs, scenarios)."""
