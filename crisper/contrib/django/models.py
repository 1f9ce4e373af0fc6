"""No Django models: Crisper's tables are Crisper's own (Alembic, run after `migrate`).

The module exists because Django sends `post_migrate` only to apps that have one.
"""
