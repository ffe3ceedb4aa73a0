"""Finding the records longer than the size limit (silver scans their files sequentially)."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from saleslake.silver.long_records import LongRecord, long_records


def write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "f.csv"
    path.write_bytes(data)
    return path


def test_long_lines_and_records_are_found_with_their_offsets_and_lengths(tmp_path):
    data = b"h1,h2\n" + b"a," + b"x" * 30 + b"\r\n" + b'b,"' + b"y\n" * 20 + b'"\n' + b"c,d\n"
    line_start = len(b"h1,h2\n")
    record_start = line_start + len(b"a," + b"x" * 30 + b"\r\n")
    assert long_records(write(tmp_path, data), 20) == [
        LongRecord(line_start, 32),  # a line: its CR LF not counted
        LongRecord(record_start, 3 + 40 + 1),  # line ends inside quotes do not end a record
    ]


def test_escaped_quotes_and_short_records_are_not_long(tmp_path):
    data = b'h\n"say ""hi""\nthere",1\n' * 50
    assert long_records(write(tmp_path, data), 25) == []


def test_a_file_no_longer_than_the_limit_is_not_read(tmp_path, monkeypatch):
    path = write(tmp_path, b"x" * 100)
    monkeypatch.setattr(Path, "open", lambda *a, **k: pytest.fail("read"))
    assert long_records(path, 100) == []


def reference(data: bytes, limit: int) -> list[LongRecord]:
    """Byte by byte: lines (between CR or LF) and records (line ends outside quotes)."""
    found: dict[int, int] = {}

    def note(start: int, end: int) -> None:
        if end - start > limit:
            found[start] = max(found.get(start, 0), end - start)

    start = 0
    for end in re.finditer(rb"[\r\n]", data):
        note(start, end.start())
        start = end.end()
    note(start, len(data))
    start, inside = 0, False
    for i, byte in enumerate(data):
        if byte == ord('"'):
            inside = not inside
        elif byte in b"\r\n" and not inside:
            note(start, i)
            start = i + 1
    note(start, len(data))
    return [LongRecord(o, n) for o, n in sorted(found.items())]


def test_block_by_block_search_matches_a_byte_by_byte_one(tmp_path):
    # small limits make blocks of a few bytes: records and quotes cross block boundaries
    rng = random.Random(14)
    for _ in range(500):
        alphabet = rng.choice([b"ab,\n", b'ab,"\n', b'a"\n\r', b"aaaaaaab\n", b'aaaa"\n'])
        data = bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 300)))
        limit = rng.randint(1, 50)
        expected = reference(data, limit) if len(data) > limit else []
        assert long_records(write(tmp_path, data), limit) == expected, (data, limit)
