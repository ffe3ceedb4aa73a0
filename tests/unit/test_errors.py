"""A write that found no room is recognised however it surfaces: Python's OSError, DuckDB's
IO error text, delta-rs' "(os error N)", or a stage's error raised from one."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import duckdb
import pytest

from saleslake.errors import PipelineError, storage_exhausted


def test_an_oserror_of_a_full_disk_quota_or_size_limit(tmp_path: Path):
    for code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        found = storage_exhausted(OSError(code, os.strerror(code), str(tmp_path / "x.csv")))
        assert found is not None and found.code == code and found.path == str(tmp_path / "x.csv")
    assert storage_exhausted(OSError(errno.ENOENT, "No such file or directory", "x")) is None
    assert storage_exhausted(ValueError("bad value")) is None


def test_the_texts_of_duckdb_and_delta_rs():
    duck = duckdb.IOException('IO Error: Could not write file "/lake/warehouse.duckdb.wal": No space left on device')
    found = storage_exhausted(duck)
    assert found is not None and (found.code, found.path) == (errno.ENOSPC, "/lake/warehouse.duckdb.wal")
    delta = RuntimeError("Generic LocalFileSystem error: Unable to copy data to file: File too large (os error 27)")
    found = storage_exhausted(delta)
    assert found is not None and (found.code, found.path) == (errno.EFBIG, None)


def test_one_raised_while_handling_or_from_another():
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as exc:
            raise PipelineError("silver failed") from exc
    except PipelineError as exc:
        found = storage_exhausted(exc)
    assert found is not None and found.code == errno.ENOSPC


@pytest.mark.parametrize(
    ("code", "says", "fix"),
    [(errno.ENOSPC, "no space left on device", "free disk space"), (errno.EFBIG, "file-size limit", "ulimit -f")],
)
def test_the_message_says_what_where_and_what_to_do(tmp_path: Path, code: int, says: str, fix: str):
    message = storage_exhausted(OSError(code, os.strerror(code), str(tmp_path / "x.csv"))).message(tmp_path)
    assert says in message and str(tmp_path / "x.csv") in message and fix in message and "\n" not in message
    assert ("MB free there" in message) == (code == errno.ENOSPC)
