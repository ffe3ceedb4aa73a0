"""One exception hierarchy for the whole package.

Every error a user can cause (bad input, bad config, a busy lock) derives from
:class:`UserError` and is shown as one line without a traceback, exit code 1. Errors
that a retry can fix derive from :class:`TransientError`. Anything else is a bug.
"""

from __future__ import annotations


class SaleslakeError(Exception):
    """Base of every error raised on purpose by saleslake."""

    exit_code = 3


class UserError(SaleslakeError):
    """The user can fix this: bad input, bad configuration, wrong usage."""

    exit_code = 1


class ConfigError(UserError):
    """Settings that cannot be used (unknown value, wrong type, missing file)."""


class InputFileError(UserError):
    """A source file that cannot be landed or parsed as a whole."""

    def __init__(self, path: str, problem: str, hint: str = "", line: int | None = None):
        self.path, self.problem, self.hint, self.line = path, problem, hint, line
        where = f"{path}:{line}" if line is not None else path
        message = f"{where}: {problem}"
        if hint:
            message += f" ({hint})"
        super().__init__(message)

    def __reduce__(self):  # it crosses process boundaries (bronze sniffs in a child process)
        return (type(self), (self.path, self.problem, self.hint, self.line))


class LockBusyError(UserError):
    """Another run holds the lake's write lock."""


class QualityGateError(SaleslakeError):
    """The run's quarantine share is above the configured threshold: gold not published."""

    exit_code = 3


class TransientError(SaleslakeError):
    """A failure that may go away on retry (service down, lock timeout)."""

    exit_code = 4


class PipelineError(SaleslakeError):
    """A stage failed for a reason that is neither the user's input nor transient."""

    exit_code = 3
