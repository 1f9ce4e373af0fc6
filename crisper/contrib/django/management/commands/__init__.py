"""Management commands of Crisper's Django app."""
