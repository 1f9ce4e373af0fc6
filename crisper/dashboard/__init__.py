"""The web dashboard: see and steer every job, live, through the same services as the API."""

from crisper.dashboard.app import create_dashboard

__all__ = ["create_dashboard"]
