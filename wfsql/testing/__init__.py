"""Data-quality assertions: generic tests declared in YAML, singular tests in tests/*.sql."""

from wfsql.testing.collect import TestNode, collect_tests
from wfsql.testing.execute import TestExecutor

__all__ = ["TestExecutor", "TestNode", "collect_tests"]
