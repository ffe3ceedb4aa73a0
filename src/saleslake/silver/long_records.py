"""Find the records of a CSV file that are longer than the record size limit.

Why: DuckDB's parallel CSV scan (``read_csv(parallel = true)``) cuts each file into
buffers of 16 × ``max_line_size`` bytes (32 MB by default) and gives each thread one.
A record longer than a buffer is neither returned nor put in the reject table: a
35 MB line vanished without a trace. A record over ``max_line_size`` that spans several
lines (a quoted field holding line breaks) is, from about half a buffer (~16 MB), split
at each of them: one 20 MB record became 258,066 rejected "records". DuckDB's sequential
scan (``parallel = false``) gets both right, as one rejected record each. Silver therefore scans a file sequentially when
:func:`long_records` finds a record over the limit in it, and in parallel otherwise.

The search reads the file once in blocks of at most 1 MiB with C-speed byte searches, so
it costs little and holds no more than a block, whatever the size of the records. It is
exact for lines (bytes between line ends). Records that continue across line ends are
found by quote parity (RFC 4180: a line end inside quotes does not end the record); a
stray quote in an unquoted field, which DuckDB reads as a plain character, can hide
such a record from it, never a line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

BLOCK_BYTES = 1 << 20
QUOTE = ord('"')
LINE_ENDS = (ord("\n"), ord("\r"))


@dataclass(frozen=True)
class LongRecord:
    """A record over the limit: where it starts in the file and its length, both in bytes
    (its line end not counted)."""

    offset: int
    length: int


def long_records(path: Path, limit: int) -> list[LongRecord]:
    """The records of ``path`` (an ASCII-compatible encoding: line ends and quotes are
    single bytes) longer than ``limit`` bytes, in file order; a file that is not longer
    than ``limit`` is not read."""
    return long_records_in(path.stat().st_size, lambda: path.open("rb"), limit)


def long_records_in(size: int, open_bytes: Callable[[], IO[bytes]], limit: int) -> list[LongRecord]:
    """:func:`long_records` of a file or object of ``size`` bytes that ``open_bytes``
    opens (a bronze object in a bucket: streamed, never held whole)."""
    if size <= limit:
        return []
    finder = _Finder(limit)
    with open_bytes() as handle:
        # a block no longer than the limit: a record that starts and ends inside one is short
        for block in iter(lambda: handle.read(min(limit, BLOCK_BYTES)), b""):
            finder.feed(block)
    return finder.finish()


class _Finder:
    """Tracks, block by block, the start of the current line and of the current record,
    and the parity of the quotes seen since that record started."""

    def __init__(self, limit: int):
        self.limit = limit
        self.base = 0  # file offset of the block being fed
        self.line_start = 0
        self.record_start = 0
        self.odd_quotes = False
        self.found: dict[int, int] = {}

    def _note(self, start: int, end: int) -> None:
        if end - start > self.limit:
            self.found[start] = max(end - start, self.found.get(start, 0))

    def feed(self, block: bytes) -> None:
        first, last = _first_line_end(block), max(block.rfind(b"\n"), block.rfind(b"\r"))
        if first >= 0:
            self._note(self.line_start, self.base + first)
            self.line_start = self.base + last + 1
            record_ends = _record_ends(block, first, last, self.odd_quotes)
            if record_ends is not None:
                self._note(self.record_start, self.base + record_ends[0])
                self.record_start = self.base + record_ends[1] + 1
                self.odd_quotes = block.count(b'"', record_ends[1] + 1) % 2 == 1
            else:
                self.odd_quotes ^= block.count(b'"') % 2 == 1
        else:
            self.odd_quotes ^= block.count(b'"') % 2 == 1
        self.base += len(block)

    def finish(self) -> list[LongRecord]:
        self._note(self.line_start, self.base)
        self._note(self.record_start, self.base)
        return [LongRecord(offset, length) for offset, length in sorted(self.found.items())]


def _first_line_end(block: bytes) -> int:
    ends = [i for i in (block.find(b"\n"), block.find(b"\r")) if i >= 0]
    return min(ends) if ends else -1


def _record_ends(block: bytes, first: int, last: int, odd_quotes: bool) -> tuple[int, int] | None:
    """The first and last line end of ``block`` outside quotes (None: every line end of
    the block is inside a quoted field), given the quote parity at the block's start."""
    # Usually the block's first and last line ends are outside quotes: two counts decide.
    if (odd_quotes + block.count(b'"', 0, first)) % 2 == 0 and (odd_quotes + block.count(b'"', 0, last)) % 2 == 0:
        return first, last
    data = np.frombuffer(block, dtype=np.uint8)
    ends = np.flatnonzero((data == LINE_ENDS[0]) | (data == LINE_ENDS[1]))
    quotes_before = np.searchsorted(np.flatnonzero(data == QUOTE), ends)
    outside = ends[(quotes_before + odd_quotes) % 2 == 0]
    return (int(outside[0]), int(outside[-1])) if len(outside) else None
