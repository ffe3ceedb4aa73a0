"""Bronze: land raw files exactly as received, content-addressed, with a manifest.

A file lands at ``bronze/csv/ingest_date=YYYY-MM-DD/<sha256>.csv`` (copied to a temporary
name, then renamed, so a crash never leaves a half file under the final name), and one
manifest row per file is appended to ``system/bronze_manifest`` in a single Delta commit
per ingest. A file whose checksum is already in the manifest is not landed again. The
manifest assigns each object a ``landed_seq``: silver processes objects in that order
and records the highest one it processed in the same Delta commit as the rows.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa
from deltalake import write_deltalake

from saleslake.errors import InputFileError
from saleslake.lake import Lake, open_delta, snapshot_view_sql
from saleslake.runs import utcnow
from saleslake.sources.csv import CsvFile, CsvOverrides, expand_paths, resolve_date_formats, sniff, undecided_sources

MANIFEST_SCHEMA = pa.schema(
    [
        ("object_id", pa.string()),  # sha256 of the bytes
        ("landed_seq", pa.int64()),
        ("kind", pa.string()),  # csv
        ("source", pa.string()),
        ("source_system", pa.string()),
        ("original_name", pa.string()),
        ("original_path", pa.string()),
        ("size_bytes", pa.int64()),
        ("bronze_uri", pa.string()),  # relative to home
        ("landed_at", pa.timestamp("us", tz="UTC")),
        ("encoding", pa.string()),
        ("delimiter", pa.string()),
        ("decimal", pa.string()),
        ("date_format", pa.string()),
        ("header", pa.list_(pa.string())),
        ("columns", pa.string()),  # JSON: canonical name -> position in the header
        ("extra_columns", pa.list_(pa.string())),
        ("currency", pa.string()),
    ]
)


@dataclass
class LandResult:
    landed: list[dict] = field(default_factory=list)
    already_landed: list[str] = field(default_factory=list)
    header_only: list[str] = field(default_factory=list)
    errors: list[InputFileError] = field(default_factory=list)


# Hashing and file I/O release the GIL; sniffing does not: a couple of threads is enough.
LANDING_THREADS = 2


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def manifest_rows(lake: Lake, where: str = "true") -> list[dict]:
    table = open_delta(lake.manifest)
    if table is None:
        return []
    con = duckdb.connect()
    try:
        return con.sql(
            f"SELECT * FROM ({snapshot_view_sql(table)}) m WHERE {where} ORDER BY landed_seq"
        ).to_arrow_table().to_pylist()
    finally:
        con.close()


def _known_state(lake: Lake) -> tuple[set[str], int, dict[str, str]]:
    """Checksums already landed, the highest landed_seq, the date format per source."""
    table = open_delta(lake.manifest)
    if table is None:
        return set(), 0, {}
    con = duckdb.connect()
    try:
        con.execute(f"CREATE VIEW m AS {snapshot_view_sql(table)}")
        ids = {r[0] for r in con.sql("SELECT object_id FROM m").fetchall()}
        top = con.execute("SELECT coalesce(max(landed_seq), 0) FROM m").fetchall()[0][0]
        formats = dict(
            con.sql(
                "SELECT source, arg_max(date_format, landed_seq) FROM m WHERE date_format IS NOT NULL GROUP BY source"
            ).fetchall()
        )
        return ids, int(top), formats
    finally:
        con.close()


def default_source(path: Path) -> str:
    """A file's source name when none is given: its folder's name (one folder per export)."""
    return path.parent.name or "default"


def _copy_verified(source: Path, target: Path, sha: str) -> None:
    """Copy ``source`` to ``target`` (via a temporary name), checking the bytes still hash to ``sha``."""
    if target.exists():
        return
    partial = target.with_name(target.name + ".partial")
    digest = hashlib.sha256()
    with source.open("rb") as src, partial.open("wb") as dst:
        for block in iter(lambda: src.read(1 << 20), b""):
            digest.update(block)
            dst.write(block)
    if digest.hexdigest() != sha:
        partial.unlink()
        raise InputFileError(str(source), "the file changed while it was being landed", "land it again once it is complete")
    os.replace(partial, target)


def _safely(fn: Callable, *args):
    try:
        return fn(*args)
    except InputFileError as exc:
        return exc


def land_csv(
    lake: Lake,
    paths: list[Path],
    source: str | None = None,
    overrides: CsvOverrides = CsvOverrides(),
    currency: str = "USD",
    progress: Callable[[int, int], None] | None = None,
) -> LandResult:
    """Land CSV files (or folders of them) in bronze. The caller holds the lake lock.

    Files that cannot be exports are reported in ``errors`` and skipped; the others land.
    Hashing, sniffing and copying run on a small thread pool: hashing and file I/O release
    the GIL, which matters for folders of thousands of daily exports.
    """
    result = LandResult()
    known_ids, top_seq, known_formats = _known_state(lake)
    files = expand_paths(paths)
    candidates: list[tuple[CsvFile, str, str]] = []  # (sniffed, source, sha)
    with ThreadPoolExecutor(max_workers=LANDING_THREADS) as pool:
        shas = list(pool.map(lambda p: _safely(sha256_of, p), files))
        fresh: list[tuple[Path, str]] = []
        seen_now: set[str] = set()
        for path, sha in zip(files, shas):
            if sha in known_ids or sha in seen_now:
                result.already_landed.append(str(path))
            elif not isinstance(sha, InputFileError):
                seen_now.add(sha)
                fresh.append((path, sha))
        # sniffing is Python (it holds the GIL): a thread pool only adds contention
        for (path, sha), sniffed in zip(fresh, map(lambda f: _safely(sniff, f[0], overrides), fresh)):
            if progress:
                progress(1, len(files))
            if isinstance(sniffed, InputFileError):
                result.errors.append(sniffed)
            elif sniffed is None:
                result.header_only.append(str(path))
            else:
                candidates.append((sniffed, source or default_source(path), sha))
        if not candidates:
            return result
        undecided = undecided_sources([c[0] for c in candidates], [c[1] for c in candidates], known_formats)
        if undecided:  # look deeper into those sources' files before asking the user
            candidates = [(sniff(c.path, overrides, deep=True) or c if src in undecided else c, src, sha)
                          for c, src, sha in candidates]
        try:
            resolved = resolve_date_formats([c[0] for c in candidates], [c[1] for c in candidates], known_formats)
        except InputFileError as exc:
            result.errors.append(exc)
            return result

        landed_at = utcnow()
        folder = lake.bronze / "csv" / f"ingest_date={landed_at:%Y-%m-%d}"
        folder.mkdir(parents=True, exist_ok=True)
        targets = [folder / f"{sha}.csv" for _, _, sha in candidates]
        copied = list(pool.map(lambda c: _safely(_copy_verified, c[0].path, c[1], c[2][2]),
                               zip(resolved, targets, candidates)))
    rows = []
    seq = top_seq
    for sniffed, target, (_, src, sha), outcome in zip(resolved, targets, candidates, copied):
        if isinstance(outcome, InputFileError):
            result.errors.append(outcome)
            continue
        seq += 1
        rows.append(
            {
                "object_id": sha,
                "landed_seq": seq,
                "kind": "csv",
                "source": src,
                "source_system": f"csv:{src}",
                "original_name": sniffed.path.name,
                "original_path": str(sniffed.path.absolute()),
                "size_bytes": target.stat().st_size,
                "bronze_uri": str(target.relative_to(lake.home)),
                "landed_at": landed_at,
                "encoding": sniffed.encoding,
                "delimiter": sniffed.delimiter,
                "decimal": sniffed.decimal,
                "date_format": sniffed.date_format,
                "header": list(sniffed.header),
                "columns": json.dumps(sniffed.columns, sort_keys=True),
                "extra_columns": list(sniffed.extra_columns),
                "currency": currency,
            }
        )
    if rows:
        lake.manifest.mkdir(parents=True, exist_ok=True)
        # One commit for the whole ingest: either every file of it is in the manifest or none.
        write_deltalake(str(lake.manifest), pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA), mode="append")
    result.landed = rows
    return result
