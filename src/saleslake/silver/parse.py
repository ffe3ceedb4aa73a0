"""Parse landed CSV objects into a DuckDB table of raw text fields.

Every field is read as text (typing and validation happen in SQL afterwards, so a bad
value becomes a reason code, never a parse failure). Records the reader cannot split
into fields (unterminated quote, too many or too few fields) or that are longer than
``csv.max_record_bytes`` are captured by DuckDB's reject store and quarantined as
``malformed_row:<kind>`` (see :mod:`saleslake.silver.long_records` for why files holding
such a long record are scanned sequentially).

DuckDB's reader detects one line end per file. A file that mixes LF, CR LF and lone CR
either stops the whole scan ("state machine reached an invalid state") or, after a
closing quote, silently joins two records into one malformed row. Such a file is read
from a copy whose line ends are all LF (every CR LF and lone CR, as Python's universal
newlines do, quoted fields included); files with uniform line ends are read as they are.
"""

from __future__ import annotations

import codecs
import functools
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import duckdb

from saleslake.lake import Lake
from saleslake.silver.long_records import LongRecord, long_records, long_records_in
from saleslake.storage.objects import ObjectStore

# Manifest fields that must be equal for files to be parsed in one read_csv call.
DIALECT_KEYS = ("encoding", "delimiter", "decimal", "date_format", "header", "columns")
# Encodings DuckDB reads in place. Files in any other encoding are transcoded to UTF-8 in
# the lake's tmp/ first (so line ends and quotes are single bytes, which long_records
# relies on). Not latin-1 nor utf-16: DuckDB's own decoders stop the whole scan on one
# byte they refuse ("File is not latin-1 encoded" for 0x80-0x9F, common in files called
# latin-1: cp1252 dashes and quotes; a lone surrogate in UTF-16).
IN_PLACE_ENCODINGS = {"utf-8", "utf-8-sig"}
# A malformed record's raw_line keeps at most this many characters (DuckDB's reject
# store keeps about as many); an oversized record's length is kept beside it.
RAW_LINE_CHARS = 10_000
OVERSIZED = "malformed_row:oversized_record"


@dataclass
class Chunk:
    """Consecutive landed objects, parsed together: one ``read_csv`` per dialect group,
    one silver commit for all. ``first_fi``: the index of ``objects[0]`` in its parent
    chunk (groups number their files within the chunk)."""

    objects: list[dict]
    first_fi: int = 0
    #: (fi, record) of each record over the size limit in these files (see scan_groups)
    long_records: tuple[tuple[int, LongRecord], ...] = ()

    @property
    def sequential(self) -> bool:
        """Whether to scan the files one record after another (they hold a long record)."""
        return bool(self.long_records)

    @property
    def dialect(self) -> dict:
        return {k: self.objects[0][k] for k in DIALECT_KEYS}

    @property
    def columns(self) -> dict[str, int]:
        return json.loads(self.objects[0]["columns"])

    @property
    def first_seq(self) -> int:
        return min(o["landed_seq"] for o in self.objects)

    @property
    def last_seq(self) -> int:
        return max(o["landed_seq"] for o in self.objects)

    @property
    def size_bytes(self) -> int:
        return sum(o["size_bytes"] for o in self.objects)

    def dialect_groups(self) -> list[Chunk]:
        """The objects sharing one dialect, each group a contiguous run of ``objects``
        (``dialect`` and ``columns`` are only meaningful on a group)."""
        groups, start = [], 0
        for _, run in itertools.groupby(self.objects, key=_dialect_key):
            objects = list(run)
            groups.append(Chunk(objects, start))
            start += len(objects)
        return groups


def scan_groups(lake: Lake, chunk: Chunk, max_record_bytes: int) -> list[Chunk]:
    """The chunk's dialect groups, each cut into runs of files scanned the same way: in
    parallel, or sequentially when a file holds a record longer than ``max_record_bytes``
    (DuckDB's parallel scan loses or shreds those; see long_records). Files no longer
    than the limit are not read here."""
    runs: list[Chunk] = []
    for group in chunk.dialect_groups():
        for index, obj in enumerate(group.objects):
            fi = group.first_fi + index
            longs = tuple((fi, r) for r in _long_records(lake, obj, max_record_bytes))
            last = runs[-1] if runs else None
            if last and index > 0 and last.sequential == bool(longs):
                last.objects.append(obj)
                last.long_records += longs
            else:
                runs.append(Chunk([obj], fi, longs))
    return runs


def _dialect_key(obj: dict) -> tuple:
    return tuple(str(obj[k]) for k in DIALECT_KEYS)


def plan_chunks(objects: list[dict], chunk_bytes: int) -> list[Chunk]:
    """Group objects (in landed order) into chunks of bounded size; within a chunk, objects
    are ordered by dialect so each dialect is one ``read_csv``.

    Chunks are consecutive ranges of the landed order (a silver commit's position is the
    highest landing sequence it covers, so nothing below it may be left for later), but
    mix dialects: exports landed day by day alternate between regions' dialects, and a
    chunk per run of one dialect would mean a commit per file.
    """
    chunks: list[list[dict]] = []
    size = 0
    for obj in objects:
        if not chunks or size + obj["size_bytes"] > chunk_bytes:
            chunks.append([])
            size = 0
        chunks[-1].append(obj)
        size += obj["size_bytes"]
    # sorted is stable: within a dialect, objects keep their landed order
    return [Chunk(sorted(group, key=_dialect_key)) for group in chunks]


def _long_records(lake: Lake, obj: dict, limit: int) -> list[LongRecord]:
    where = _readable_path(lake, obj)
    if isinstance(where, Path):
        return long_records(where, limit)
    key = obj["bronze_uri"]  # the object itself, in the lake's bucket
    return long_records_in(lake.objects.size(key) or 0, lambda: lake.objects.open(key), limit)


def _readable_path(lake: Lake, obj: dict) -> Path | str:
    """The bronze file, transcoded to UTF-8 in tmp/ when DuckDB cannot read its encoding,
    and copied with LF line ends when it mixes line ends (see the module docstring). On a
    lake in a bucket, an object read in place is its ``s3://`` URI (DuckDB reads it through
    s3fs, see connections.duckdb.session); copies are always local (``lake.tmp``)."""
    key = obj["bronze_uri"]
    objects = lake.objects
    path: Path | str = lake.home / key if lake.is_local else objects.uri(key)
    encoding = obj["encoding"]
    if encoding.lower() not in IN_PLACE_ENCODINGS:
        lake.tmp.mkdir(parents=True, exist_ok=True)
        # per encoding: a reparse may read the same object with another one
        target = lake.tmp / f"{obj['object_id']}.{encoding.lower()}.utf8.csv"
        if not target.exists():
            partial = target.with_suffix(".partial")
            decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
            with objects.open(key) as src, partial.open("w", encoding="utf-8", newline="") as dst:
                for block in iter(lambda: src.read(1 << 20), b""):
                    dst.write(decoder.decode(block))
                dst.write(decoder.decode(b"", final=True))
            partial.replace(target)
        path = target
    if isinstance(path, Path):
        mixed = _mixed_line_ends(str(path))
    else:
        mixed = _object_has_mixed_line_ends(objects, key)
    if mixed:
        return _with_lf_line_ends(lake, f"{obj['object_id']}.{encoding.lower()}", objects, key, path)
    return path


@functools.lru_cache(maxsize=65_536)  # bronze objects and their tmp/ copies never change
def _mixed_line_ends(path: str) -> bool:
    """Whether the (UTF-8) file has CRs that are neither all of its line ends (old Mac) nor
    each one half of a CR LF. Reads the file: ~0.1 ms/MB without a CR, ~2 ms/MB with."""
    with open(path, "rb") as src:
        return _has_mixed_line_ends(src)


_OBJECT_LINE_ENDS: dict[str, bool] = {}


def _object_has_mixed_line_ends(objects: ObjectStore, key: str) -> bool:
    """:func:`_mixed_line_ends` of an object in a bucket (remembered by URI: objects never change)."""
    uri = objects.uri(key)
    if uri not in _OBJECT_LINE_ENDS:
        with objects.open(key) as src:
            mixed = _has_mixed_line_ends(src)
        if len(_OBJECT_LINE_ENDS) >= 65_536:
            _OBJECT_LINE_ENDS.clear()
        _OBJECT_LINE_ENDS[uri] = mixed
    return _OBJECT_LINE_ENDS[uri]


def _has_mixed_line_ends(src: IO[bytes]) -> bool:
    cr = lf = crlf = 0
    previous = b""
    for block in iter(lambda: src.read(1 << 20), b""):
        if b"\r" in block:
            cr += block.count(b"\r")
            crlf += block.count(b"\r\n")
        crlf += previous == b"\r" and block[:1] == b"\n"  # a CR LF across two blocks
        lf += block.count(b"\n")
        previous = block[-1:]
    return cr > 0 and lf > 0 and not cr == lf == crlf


def _with_lf_line_ends(lake: Lake, name: str, objects: ObjectStore, key: str, path: Path | str) -> Path:
    """A copy of the (UTF-8) file in tmp/ with every CR LF and lone CR replaced by LF (a CR
    byte is a CR whatever the bytes around it: bytes that are not UTF-8 are kept)."""
    lake.tmp.mkdir(parents=True, exist_ok=True)
    target = lake.tmp / f"{name}.lf.csv"
    if target.exists():
        return target
    partial = target.with_suffix(".partial")
    with (
        path.open("rb") if isinstance(path, Path) else objects.open(key) as src,
        partial.open("wb") as dst,
    ):
        carry = b""
        for block in iter(lambda: src.read(1 << 20), b""):
            block = carry + block
            carry = b"\r" if block.endswith(b"\r") else b""  # its LF may start the next block
            block = block[: len(block) - len(carry)]
            dst.write(block.replace(b"\r\n", b"\n").replace(b"\r", b"\n"))
        dst.write(carry.replace(b"\r", b"\n"))
    partial.replace(target)
    return target


def _paths(lake: Lake, chunk: Chunk) -> list[str]:
    return [str(_readable_path(lake, o)) for o in chunk.objects]


def _sql_list(values: list[str]) -> str:
    return "[" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + "]"


def scan_sql(lake: Lake, chunk: Chunk, max_record_bytes: int) -> str:
    """The records of one dialect group as text: (fi, cK for each column silver uses), in
    file order; ``fi`` is the file's index in the chunk. Records longer than
    ``max_record_bytes`` are rejected (the sequential scan of a ``chunk.sequential`` group
    sees every one of them).

    Collected with ``preserve_insertion_order`` on (through projections only), the rows
    come in the files' record order (DuckDB keeps the order of parallel scans), which
    gives each record its position without an order-preserving window (that one costs
    ~70 %; see process._positions). Records the reader cannot split land in the
    ``reject_errors`` table instead.
    """
    dialect = chunk.dialect
    width = len(dialect["header"])
    columns = "{" + ", ".join(f"'c{i}': 'VARCHAR'" for i in range(width)) + "}"
    # only the columns silver reads: a header may have thousands of extra columns
    used = ", ".join(f"c{i}" for i in sorted(set(chunk.columns.values())))
    files = _paths(lake, chunk)
    native = dialect["encoding"].lower()
    encoding = native if native in IN_PLACE_ENCODINGS and not native.startswith("utf-8") else "utf-8"
    delimiter = dialect["delimiter"].replace("'", "''")
    return f"""
        SELECT file_index + {chunk.first_fi} AS fi, {used}
        FROM read_csv({_sql_list(files)}, columns = {columns}, header = true, auto_detect = false,
                      delim = '{delimiter}', quote = '"', escape = '"', encoding = '{encoding}',
                      store_rejects = true, rejects_table = 'reject_errors', rejects_scan = 'reject_scans',
                      max_line_size = {int(max_record_bytes)}, parallel = {str(not chunk.sequential).lower()})
    """


def reset_rejects(con: duckdb.DuckDBPyConnection) -> None:
    """Before each scan: DuckDB's reject store holds one scan's records."""
    con.execute("DROP TABLE IF EXISTS reject_errors; DROP TABLE IF EXISTS reject_scans")


def collect_rejects(con: duckdb.DuckDBPyConnection, lake: Lake, group: Chunk) -> None:
    """Add to temp table ``rejects`` one row per rejected record of the last scan: (fi,
    line, reasons, raw, raw_line). A record over the size limit has the one reason
    ``malformed_row:oversized_record`` (DuckDB's other kinds for it are artefacts of its
    size: a 100 MB line is also "too many columns") and its length in bytes as
    ``raw['raw_line_bytes']``: measured by long_records when the record starts where one
    found starts, else as DuckDB reports it."""
    files = _paths(lake, group)
    con.execute(
        """CREATE TEMP TABLE IF NOT EXISTS rejects
           (fi BIGINT, line BIGINT, reasons VARCHAR[], raw MAP(VARCHAR, VARCHAR), raw_line VARCHAR)"""
    )
    measured = ", ".join(f"({fi}, {r.offset}, {r.length})" for fi, r in group.long_records) or "(NULL, NULL, NULL)"
    con.execute(
        f"""
        INSERT INTO rejects
        WITH records AS (
            SELECT list_position({_sql_list(files)}, s.file_path) - 1 + {group.first_fi} AS fi, e.line AS line,
                   list_sort(list_distinct(list(lower(replace(e.error_type, ' ', '_'))))) AS kinds,
                   any_value(trim(e.csv_line, chr(10) || chr(13))) AS csv_line,
                   min(e.line_byte_position) AS start,
                   max(TRY_CAST(regexp_extract(e.error_message, 'Actual Size: *([0-9]+)', 1) AS BIGINT)) AS reported
            FROM reject_errors e JOIN reject_scans s USING (scan_id, file_id)
            GROUP BY ALL
        ), measured(fi, start, length) AS (VALUES {measured})
        SELECT r.fi, r.line,
               CASE WHEN list_contains(r.kinds, 'line_size_over_maximum') THEN ['{OVERSIZED}']
                    ELSE list_transform(r.kinds, lambda k: 'malformed_row:' || k) END,
               CASE WHEN list_contains(r.kinds, 'line_size_over_maximum')
                    THEN MAP {{'raw_line_bytes': CAST(coalesce(m.length, r.reported) AS VARCHAR)}} END,
               left(r.csv_line, {RAW_LINE_CHARS})
        FROM records r LEFT JOIN measured m ON m.fi = r.fi AND m.start = r.start
        """
    )
