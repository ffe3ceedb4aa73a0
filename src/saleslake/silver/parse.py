"""Parse landed CSV objects into a DuckDB table of raw text fields.

Every field is read as text (typing and validation happen in SQL afterwards, so a bad
value becomes a reason code, never a parse failure). Records the reader cannot split
into fields (unterminated quote, too many or too few fields) are captured by DuckDB's
reject store and quarantined as ``malformed_row``.

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

import duckdb

from saleslake.lake import Lake
from saleslake.sources.csv import NATIVE_ENCODINGS

# Manifest fields that must be equal for files to be parsed in one read_csv call.
DIALECT_KEYS = ("encoding", "delimiter", "decimal", "date_format", "header", "columns")


@dataclass
class Chunk:
    """Consecutive landed objects, parsed together: one ``read_csv`` per dialect group,
    one silver commit for all. ``first_fi``: the index of ``objects[0]`` in its parent
    chunk (groups number their files within the chunk)."""

    objects: list[dict]
    first_fi: int = 0

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


def _readable_path(lake: Lake, obj: dict) -> Path:
    """The bronze file, transcoded to UTF-8 in tmp/ when DuckDB cannot read its encoding,
    and copied with LF line ends when it mixes line ends (see the module docstring)."""
    path = lake.home / obj["bronze_uri"]
    encoding = obj["encoding"]
    if encoding.lower() not in NATIVE_ENCODINGS:
        lake.tmp.mkdir(parents=True, exist_ok=True)
        target = lake.tmp / f"{obj['object_id']}.utf8.csv"
        if not target.exists():
            partial = target.with_suffix(".partial")
            decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
            with path.open("rb") as src, partial.open("w", encoding="utf-8", newline="") as dst:
                for block in iter(lambda: src.read(1 << 20), b""):
                    dst.write(decoder.decode(block))
                dst.write(decoder.decode(b"", final=True))
            partial.replace(target)
        path = target
    return _with_lf_line_ends(lake, obj["object_id"], path) if _mixed_line_ends(str(path)) else path


@functools.lru_cache(maxsize=65_536)  # bronze objects and their tmp/ copies never change
def _mixed_line_ends(path: str) -> bool:
    """Whether the (UTF-8) file has CRs that are neither all of its line ends (old Mac) nor
    each one half of a CR LF. Reads the file: ~0.1 ms/MB without a CR, ~2 ms/MB with."""
    cr = lf = crlf = 0
    with open(path, "rb") as src:
        previous = b""
        for block in iter(lambda: src.read(1 << 20), b""):
            if b"\r" in block:
                cr += block.count(b"\r")
                crlf += block.count(b"\r\n")
            crlf += previous == b"\r" and block[:1] == b"\n"  # a CR LF across two blocks
            lf += block.count(b"\n")
            previous = block[-1:]
    return cr > 0 and lf > 0 and not cr == lf == crlf


def _with_lf_line_ends(lake: Lake, object_id: str, path: Path) -> Path:
    """A copy of the (UTF-8) file in tmp/ with every CR LF and lone CR replaced by LF (a CR
    byte is a CR whatever the bytes around it: bytes that are not UTF-8 are kept)."""
    lake.tmp.mkdir(parents=True, exist_ok=True)
    target = lake.tmp / f"{object_id}.lf.csv"
    if target.exists():
        return target
    partial = target.with_suffix(".partial")
    with path.open("rb") as src, partial.open("wb") as dst:
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


def scan_sql(lake: Lake, chunk: Chunk) -> str:
    """The records of one dialect group as text: (fi, c0..cN), in file order; ``fi`` is
    the file's index in the chunk.

    Collected with ``preserve_insertion_order`` on (through projections only), the rows
    come in the files' record order (DuckDB keeps the order of parallel scans), which
    gives each record its position without an order-preserving window (that one costs
    ~70 %; see process._positions). Records the reader cannot split land in the
    ``reject_errors`` table instead.
    """
    dialect = chunk.dialect
    width = len(dialect["header"])
    columns = "{" + ", ".join(f"'c{i}': 'VARCHAR'" for i in range(width)) + "}"
    files = _paths(lake, chunk)
    native = dialect["encoding"].lower()
    encoding = native if native in NATIVE_ENCODINGS and not native.startswith("utf-8") else "utf-8"
    delimiter = dialect["delimiter"].replace("'", "''")
    return f"""
        SELECT file_index + {chunk.first_fi} AS fi, {", ".join(f"c{i}" for i in range(width))}
        FROM read_csv({_sql_list(files)}, columns = {columns}, header = true, auto_detect = false,
                      delim = '{delimiter}', quote = '"', escape = '"', encoding = '{encoding}',
                      store_rejects = true, rejects_table = 'reject_errors', rejects_scan = 'reject_scans',
                      parallel = true)
    """


def reset_rejects(con: duckdb.DuckDBPyConnection) -> None:
    """Before each scan: DuckDB's reject store holds one scan's records."""
    con.execute("DROP TABLE IF EXISTS reject_errors; DROP TABLE IF EXISTS reject_scans")


def collect_rejects(con: duckdb.DuckDBPyConnection, lake: Lake, group: Chunk) -> None:
    """Add to temp table ``rejects`` one row per unsplittable record of the last scan
    (fi, line, error_types, csv_line)."""
    files = _paths(lake, group)
    con.execute(
        """CREATE TEMP TABLE IF NOT EXISTS rejects
           (fi BIGINT, line BIGINT, error_types VARCHAR[], csv_line VARCHAR)"""
    )
    con.execute(
        f"""
        INSERT INTO rejects
        SELECT list_position({_sql_list(files)}, s.file_path) - 1 + {group.first_fi} AS fi, e.line AS line,
               list_sort(list_distinct(list(lower(replace(e.error_type, ' ', '_'))))) AS error_types,
               any_value(trim(e.csv_line, chr(10) || chr(13))) AS csv_line
        FROM reject_errors e JOIN reject_scans s USING (scan_id, file_id)
        GROUP BY ALL
        """
    )
