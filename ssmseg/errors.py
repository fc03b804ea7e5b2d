"""Expected failures: each carries a one-line message that names the problem and the fix.

The CLI prints ``error: <message>`` and exits with ``exit_code``; no traceback unless debugging.
"""

from __future__ import annotations


class SsmsegError(Exception):
    """Base of every expected failure. Runtime failures exit 1."""

    exit_code = 1


class ConfigError(SsmsegError):
    """A bad option or config value (exit 2). ``problems`` holds one line per problem."""

    exit_code = 2

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        self.problems = problems or []
        super().__init__(message)


class UsageError(SsmsegError):
    """The command line itself is wrong (exit 2)."""

    exit_code = 2


class InputError(SsmsegError):
    """A file or data problem found while running (exit 1)."""


class BackendUnavailableError(SsmsegError):
    """A forced backend or device cannot run here (exit 1)."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a command, with one line saying where it stopped and how to continue (exit 130)."""
