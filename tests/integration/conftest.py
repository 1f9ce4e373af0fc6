"""Fixtures shared by the integration tests' files."""

from tests.integration.security_world import world  # noqa: F401 - the security tests' world
