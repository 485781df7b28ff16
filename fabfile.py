"""Entry point for ``fab``: the tasks live in ops/tasks/ (``fab --list`` shows them)."""

from ops.tasks import ns  # noqa: F401
