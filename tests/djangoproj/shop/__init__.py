"""The test project's Django app: orders, confirmed by a Crisper job through the ORM."""
