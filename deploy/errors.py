"""One error type for everything a user can get wrong; the CLI prints its message, no traceback."""

from __future__ import annotations


class DeployError(RuntimeError):
    """A problem the user can fix; the message says what to change."""


class DeployUsageError(DeployError):
    """A bad argument found before anything was deployed (exit code 2, like argparse's)."""
