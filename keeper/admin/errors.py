"""The one error type of the admin commands: a line that says what to change (exit code 2)."""

from __future__ import annotations

from keeper.settings import ConfigError


class AdminError(ConfigError):
    """A refused vault command: bad input, an unsafe change, or a call the vault would revert.
    A ConfigError, so `keeper`'s entry point prints it as one line and exits 2."""
