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
import pickle
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa
from deltalake import write_deltalake

from saleslake.crashpoints import crash_point
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
#: Files up to this size are read once: hashed and written from the same bytes
#: (exports are typically a few hundred kB). Larger ones are hashed first, then copied
#: while hashed again, so memory stays bounded (at most this much per landing thread).
WHOLE_READ_BYTES = 64 << 20
#: From this many files on, they are sniffed in a child process (see _start_sniffing).
SNIFF_PROCESS_FILES = 200


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
        return (
            con.sql(f"SELECT * FROM ({snapshot_view_sql(table)}) m WHERE {where} ORDER BY landed_seq")
            .to_arrow_table()
            .to_pylist()
        )
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


def _partial_name(target: Path) -> Path:
    # unique: two identical files of one ingest may be written at the same time
    return target.with_name(f"{target.name}.{uuid.uuid4().hex}.partial")


def _write_whole(target: Path, content: bytes) -> None:
    """Write ``content`` to ``target`` via a temporary name (a crash never leaves a half file)."""
    if target.exists():
        return
    partial = _partial_name(target)
    partial.write_bytes(content)
    os.replace(partial, target)


def _copy_verified(source: Path, target: Path, sha: str) -> None:
    """Copy ``source`` to ``target`` (via a temporary name), checking the bytes still hash to ``sha``."""
    if target.exists():
        return
    partial = _partial_name(target)
    digest = hashlib.sha256()
    with source.open("rb") as src, partial.open("wb") as dst:
        for block in iter(lambda: src.read(1 << 20), b""):
            digest.update(block)
            dst.write(block)
    if digest.hexdigest() != sha:
        partial.unlink()
        raise InputFileError(
            str(source), "the file changed while it was being landed", "land it again once it is complete"
        )
    os.replace(partial, target)


@dataclass
class _Stored:
    """One file after :func:`_store`: its checksum and whether this call wrote its object."""

    path: Path
    sha: str
    already_landed: bool = False
    created: bool = False


def _store(path: Path, known: set[str], folder: Path) -> _Stored:
    """Hash one file and, unless its checksum is ``known``, write it to
    ``folder/<sha256>.csv``, reading it once when it is small."""
    content = path.read_bytes() if path.stat().st_size <= WHOLE_READ_BYTES else None
    sha = hashlib.sha256(content).hexdigest() if content is not None else sha256_of(path)
    if sha in known:
        return _Stored(path, sha, already_landed=True)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{sha}.csv"
    created = not target.exists()
    if content is not None:
        _write_whole(target, content)
    else:
        _copy_verified(path, target, sha)
    crash_point("bronze.object_written")
    return _Stored(path, sha, created=created)


class _ChildSniffer:
    """Sniffs files in a child Python process beside the copying threads. Sniffing is
    Python and holds the GIL: in a thread beside the copying, it starved those threads
    (10M lines: 17 s instead of 8 + 4); after them, it added its 4 s. The child is a
    fresh interpreter (``python -m saleslake.sources.csv``), not multiprocessing, whose
    spawned children re-run an unguarded caller's main script."""

    def __init__(self, files: list[Path], overrides: CsvOverrides):
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        self._child = subprocess.Popen(
            [sys.executable, "-m", "saleslake.sources.csv"],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self._request = pickle.dumps((files, overrides))
        self._answers: list | None = None
        self._thread = threading.Thread(target=self._talk, daemon=True)
        self._thread.start()

    def _talk(self) -> None:
        try:
            out, _ = self._child.communicate(self._request)
            if self._child.returncode == 0:
                self._answers = pickle.loads(out)
        except (OSError, ValueError, pickle.UnpicklingError, EOFError, AttributeError, ImportError):
            self._answers = None

    def answers(self) -> list | None:
        """Each file's sniff (CsvFile, None or InputFileError), or None when the child
        failed (the caller then sniffs in this process)."""
        self._thread.join()
        return self._answers

    def stop(self) -> None:
        if self._child.poll() is None:
            self._child.kill()
        self._thread.join()


def _start_sniffing(files: list[Path], overrides: CsvOverrides) -> _ChildSniffer | None:
    """A child sniffing ``files``, when there are enough of them to pay for starting it
    (~0.15 s)."""
    if len(files) < SNIFF_PROCESS_FILES:
        return None
    try:
        return _ChildSniffer(files, overrides)
    except OSError:
        return None


def _unland(folder: Path, stored: list[_Stored]) -> None:
    """Remove the objects this ingest wrote for files that do not land after all."""
    for s in stored:
        if s.created:
            (folder / f"{s.sha}.csv").unlink(missing_ok=True)


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
    Each file is hashed and, unless landed before, written to bronze on a small thread
    pool (hashing and file I/O release the GIL, which matters for folders of thousands of
    daily exports) while a child process sniffs them all (a few files are sniffed here
    afterwards). Objects of files that do not land
    after all (not an export, header only, date formats that cannot be resolved) are
    removed again: an object is landed once its manifest row is committed, and one a
    crash left behind is reused by the next landing of the same bytes.
    """
    result = LandResult()
    known_ids, top_seq, known_formats = _known_state(lake)
    files = expand_paths(paths)
    landed_at = utcnow()
    folder = lake.bronze / "csv" / f"ingest_date={landed_at:%Y-%m-%d}"
    sniffer = _start_sniffing(files, overrides)
    try:
        with ThreadPoolExecutor(max_workers=LANDING_THREADS) as pool:
            stored = list(pool.map(lambda p: _safely(_store, p, known_ids, folder), files))
        # nothing new (a folder landed again): no need to wait for the child
        fresh = any(isinstance(o, _Stored) and not o.already_landed for o in stored)
        sniffs = sniffer.answers() if sniffer and fresh else None
    finally:
        if sniffer:
            sniffer.stop()
    written: list[_Stored] = []
    staged: list[tuple[_Stored, CsvFile]] = []
    seen_now: set[str] = set()
    for index, (path, outcome) in enumerate(zip(files, stored)):
        if progress:
            progress(1, len(files))
        if isinstance(outcome, InputFileError):
            result.errors.append(outcome)
            continue
        if outcome.already_landed or outcome.sha in seen_now:
            result.already_landed.append(str(path))
            continue
        seen_now.add(outcome.sha)
        written.append(outcome)
        # the child sniffed the same files; without one (a few files), sniff them here
        sniffed = sniffs[index] if sniffs is not None else _safely(sniff, path, overrides)
        if isinstance(sniffed, InputFileError):
            result.errors.append(sniffed)
        elif sniffed is None:
            result.header_only.append(str(path))
        else:
            staged.append((outcome, sniffed))
    if not staged:
        _unland(folder, written)
        return result
    landing = {s.sha for s, _ in staged}
    _unland(folder, [w for w in written if w.sha not in landing])
    candidates = [(sniffed, source or default_source(s.path), s.sha) for s, sniffed in staged]
    undecided = undecided_sources([c[0] for c in candidates], [c[1] for c in candidates], known_formats)
    if undecided:  # look deeper into those sources' files before asking the user
        candidates = [
            (sniff(c.path, overrides, deep=True) or c if src in undecided else c, src, sha)
            for c, src, sha in candidates
        ]
    try:
        resolved = resolve_date_formats([c[0] for c in candidates], [c[1] for c in candidates], known_formats)
    except InputFileError as exc:
        _unland(folder, [s for s, _ in staged])
        result.errors.append(exc)
        return result
    targets = [folder / f"{sha}.csv" for _, _, sha in candidates]
    rows = []
    seq = top_seq
    for sniffed, target, (_, src, sha) in zip(resolved, targets, candidates):
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
        crash_point("bronze.manifest.before_commit")
        write_deltalake(str(lake.manifest), pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA), mode="append")
        crash_point("bronze.manifest.after_commit")
    result.landed = rows
    return result
