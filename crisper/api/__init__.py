"""The HTTP API (v1): a FastAPI app over the same service layer the CLI uses."""

from crisper.api.app import ROUTERS, create_app

__all__ = ["ROUTERS", "create_app"]
