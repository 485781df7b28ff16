"""Shared test configuration. Fixtures live in named modules (tests/fix_*.py)."""

pytest_plugins = ["tests.fix_stack", "tests.fix_sshd"]
