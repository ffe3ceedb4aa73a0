"""One exception hierarchy for the whole package.

Every error a user can cause (bad input, bad config, a busy lock) derives from
:class:`UserError` and is shown as one line without a traceback, exit code 1. Errors
that a retry can fix derive from :class:`TransientError`. Anything else is a bug.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path


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


# -- a write that found no room ------------------------------------------------------------

#: errno of a write refused for lack of room: what happened, and what the user does about it.
STORAGE_ERRNOS: dict[int, tuple[str, str]] = {
    errno.ENOSPC: ("no space left on device", "free disk space there (or use a folder on another file system)"),
    errno.EDQUOT: ("disk quota exceeded", "free space within your quota (or use a folder on another file system)"),
    errno.EFBIG: ("a file outgrew the process's file-size limit (ulimit -f)", "raise the limit (ulimit -f)"),
}
# DuckDB and delta-rs report them as text: "...: No space left on device (os error 28)"
_STRERRORS = {os.strerror(code).lower(): code for code in STORAGE_ERRNOS}
_OS_ERROR = re.compile(r"\(os error (\d+)\)")
_QUOTED_PATH = re.compile(r"[\"'](/[^\"']+)[\"']")


@dataclass(frozen=True)
class StorageExhausted:
    """A write that failed for lack of room (disk full, quota, file-size limit)."""

    code: int
    path: str | None

    def message(self, home: Path | None = None) -> str:
        """One line: what, where, what to do. Committed data is never lost to it (every
        stage commits atomically, so a rerun resumes where the last commit left off)."""
        what, fix = STORAGE_ERRNOS[self.code]
        where = f" writing {self.path}" if self.path else f" writing under {home}" if home else ""
        free = "" if self.code == errno.EFBIG else _free_space(Path(self.path).parent if self.path else home)
        return f"{what}{where}{free}: {fix}, then run the command again (what was committed is intact)"


def storage_exhausted(exc: BaseException) -> StorageExhausted | None:
    """The lack of room behind ``exc`` (itself, or an exception it was raised from or while
    handling), or None: an ``OSError`` with errno ENOSPC, EDQUOT or EFBIG, or a DuckDB or
    Delta error whose text carries one."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        found = _storage_errno(current)
        if found:
            return found
        current = current.__cause__ or current.__context__
    return None


def _storage_errno(exc: BaseException) -> StorageExhausted | None:
    if isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS:
        return StorageExhausted(exc.errno, str(exc.filename) if exc.filename else None)
    text = str(exc)
    codes = [int(c) for c in _OS_ERROR.findall(text) if int(c) in STORAGE_ERRNOS]
    codes += [code for name, code in _STRERRORS.items() if name in text.lower()]
    if not codes:
        return None
    path = _QUOTED_PATH.search(text)
    return StorageExhausted(codes[0], path.group(1) if path else None)


def _free_space(folder: Path | None) -> str:
    """`` (12.3 MB free there)`` for the file system holding ``folder``, or nothing (also
    when it is not a local folder, e.g. a path on a database server)."""
    if folder is None:
        return ""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return ""
    return f" ({free / 1e6:,.1f} MB free there)"
