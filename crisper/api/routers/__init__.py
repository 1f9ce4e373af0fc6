"""The API's routers, one module per resource; crisper.api.app lists them."""
