"""Bronze: land raw files exactly as received, content-addressed, with a manifest.

A file lands at ``bronze/csv/ingest_date=YYYY-MM-DD/<sha256>.csv`` through the lake's
object store (:attr:`saleslake.lake.Lake.objects`: in a folder it is copied to a temporary
name, then renamed; in a bucket it is a put-if-absent, streamed in parts when large; so a
crash never leaves a half object under the final name), and one
manifest row per file is appended to ``system/bronze_manifest`` in a single Delta commit
per ingest. A file whose checksum is already in the manifest is not landed again. The
manifest assigns each object a ``landed_seq``: silver processes objects in that order
and records the highest one it processed in the same Delta commit as the rows.

A file landed with the wrong dialect options is corrected by a *reparse*
(:func:`reparse_csv`, ``ingest csv FILE --reparse``): the same bytes land again with a new
manifest row whose ``replaces_seq`` names the original landing. Silver parses it at its
own ``landed_seq`` (after its position, so exactly once) but gives its rows the original's
landing sequence (so a later landed correction of a line still wins), and replaces every
row of the earlier parse (see :mod:`saleslake.silver.process`).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

import pyarrow as pa

from saleslake.contract import UTC_TIME, text_fields
from saleslake.crashpoints import crash_point
from saleslake.errors import InputFileError
from saleslake.lake import Lake, open_delta, snapshot_connection, snapshot_view_sql, write_delta
from saleslake.runs import utcnow
from saleslake.sources.csv import CsvFile, CsvOverrides, expand_paths, resolve_date_formats, sniff, undecided_sources
from saleslake.storage.objects import ContentChangedError, ObjectStore

MANIFEST_SCHEMA = pa.schema(
    [
        ("object_id", pa.string()),  # sha256 of the bytes
        ("landed_seq", pa.int64()),
        ("kind", pa.string()),  # csv
        *text_fields("source", "source_system", "original_name", "original_path"),
        ("size_bytes", pa.int64()),
        ("bronze_uri", pa.string()),  # relative to home
        ("landed_at", UTC_TIME),
        # the dialect the file was parsed with
        *text_fields("encoding", "delimiter", "decimal", "date_format"),
        ("header", pa.list_(pa.string())),
        ("columns", pa.string()),  # JSON: canonical name -> position in the header
        ("extra_columns", pa.list_(pa.string())),
        ("currency", pa.string()),
        # a reparse: the landed_seq of the file's original landing, whose rows it replaces
        # (null for a first landing; absent from manifests written before reparses existed)
        ("replaces_seq", pa.int64()),
        # the rows of the earlier parse silver held when the reparse landed: the last
        # landing sequence of the batch that wrote them, how many, how many quarantined
        # (the quality gate takes them out of its share, see saleslake.api)
        ("replaces_batch_seq", pa.int64()),
        ("replaces_rows", pa.int64()),
        ("replaces_quarantined", pa.int64()),
    ]
)


@dataclass
class LandResult:
    landed: list[dict] = field(default_factory=list)
    already_landed: list[str] = field(default_factory=list)
    header_only: list[str] = field(default_factory=list)
    errors: list[InputFileError] = field(default_factory=list)
    reparsed: list[dict] = field(default_factory=list)  # manifest rows of reparses (reparse_csv)

    def usable(self, path: Path, sniffed: CsvFile | InputFileError | None) -> CsvFile | None:
        """The sniff of ``path`` when the file can land; a file that cannot (an error, a
        header without rows) is recorded here instead, so that every file is accounted for."""
        if isinstance(sniffed, InputFileError):
            self.errors.append(sniffed)
        elif sniffed is None:
            self.header_only.append(str(path))
        return sniffed if isinstance(sniffed, CsvFile) else None


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
    con = snapshot_connection(lake)
    try:
        return (
            con.sql(f"SELECT * FROM ({snapshot_view_sql(table)}) m WHERE {where} ORDER BY landed_seq")
            .to_arrow_table()
            .to_pylist()
        )
    finally:
        con.close()


def _has_replaces(table) -> bool:
    return "replaces_seq" in pa.schema(table.schema()).names


def pending_csv_objects(lake: Lake, after_seq: int) -> list[dict]:
    """The CSV objects landed after ``after_seq`` that silver still has to parse, in
    landing order, each with ``version_seq``: the landing sequence its rows carry (its own,
    or for a reparse the original landing's). An object that a later reparse of the same
    file supersedes is left out: only the latest parse of a file counts."""
    table = open_delta(lake.manifest)
    if table is None:
        return []
    replaces = "replaces_seq" if _has_replaces(table) else "CAST(NULL AS BIGINT)"
    con = snapshot_connection(lake)
    try:
        return (
            con.sql(
                f"""
                SELECT * FROM (
                    SELECT *, coalesce({replaces}, landed_seq) AS version_seq,
                           max(landed_seq) OVER (PARTITION BY coalesce({replaces}, landed_seq)) AS latest_seq
                    FROM ({snapshot_view_sql(table)}) m WHERE kind = 'csv'
                )
                WHERE landed_seq > {int(after_seq)} AND landed_seq = latest_seq
                ORDER BY landed_seq
                """
            )
            .to_arrow_table()
            .drop_columns(["latest_seq"])
            .to_pylist()
        )
    finally:
        con.close()


def landed_csv_objects(lake: Lake, up_to_seq: int, source_systems: list[str]) -> list[dict]:
    """The CSV objects of ``source_systems`` as silver holds them after processing every
    landing up to ``up_to_seq``: each object's latest parse by then (a reparse's or its
    own), with ``version_seq`` as in :func:`pending_csv_objects`."""
    table = open_delta(lake.manifest)
    if table is None or not source_systems:
        return []
    replaces = "replaces_seq" if _has_replaces(table) else "CAST(NULL AS BIGINT)"
    systems = ", ".join("'" + s.replace("'", "''") + "'" for s in source_systems)
    con = snapshot_connection(lake)
    try:
        return (
            con.sql(
                f"""
                SELECT *, coalesce({replaces}, landed_seq) AS version_seq
                FROM ({snapshot_view_sql(table)}) m
                WHERE kind = 'csv' AND landed_seq <= {int(up_to_seq)} AND source_system IN ({systems})
                QUALIFY row_number() OVER (PARTITION BY coalesce({replaces}, landed_seq) ORDER BY landed_seq DESC) = 1
                ORDER BY landed_seq
                """
            )
            .to_arrow_table()
            .to_pylist()
        )
    finally:
        con.close()


def _append_manifest(lake: Lake, rows: list[dict]) -> None:
    """One commit for the rows of one ingest: either every file of it is in the manifest or
    none (a manifest from before ``replaces_seq`` gains the column)."""
    write_delta(lake.manifest, pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA), mode="append", schema_mode="merge")


def _known_state(lake: Lake) -> tuple[set[str], int, dict[str, str]]:
    """Checksums already landed, the highest landed_seq, the date format per source."""
    table = open_delta(lake.manifest)
    if table is None:
        return set(), 0, {}
    con = snapshot_connection(lake)
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


def _bronze_key(folder: str, sha: str) -> str:
    """An object's key (and ``bronze_uri``): relative to the lake's home."""
    return f"{folder}/{sha}.csv"


def _upload_verified(objects: ObjectStore, key: str, source: Path, sha: str) -> bool:
    """Stream ``source`` to ``key`` unless it is there, checking the bytes still hash to
    ``sha``; True when this call wrote the object."""
    try:
        return objects.upload_once(key, source, sha)
    except ContentChangedError:
        raise InputFileError(
            str(source), "the file changed while it was being landed", "land it again once it is complete"
        ) from None


@dataclass
class _Stored:
    """One file after :func:`_store`: its checksum and whether this call wrote its object."""

    path: Path
    sha: str
    already_landed: bool = False
    created: bool = False


def _store(path: Path, known: set[str], objects: ObjectStore, folder: str) -> _Stored:
    """Hash one file and, unless its checksum is ``known``, write it to
    ``folder/<sha256>.csv`` (put if absent: content-addressed, so an object already there
    holds these bytes), reading it once when it is small; a large file is streamed."""
    content = path.read_bytes() if path.stat().st_size <= WHOLE_READ_BYTES else None
    sha = hashlib.sha256(content).hexdigest() if content is not None else sha256_of(path)
    if sha in known:
        return _Stored(path, sha, already_landed=True)
    key = _bronze_key(folder, sha)
    if content is not None:
        created = objects.write_once(key, content)
    else:
        created = _upload_verified(objects, key, path, sha)
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


def _unland(objects: ObjectStore, folder: str, stored: list[_Stored]) -> None:
    """Remove the objects this ingest wrote for files that do not land after all."""
    for s in stored:
        if s.created:
            objects.delete(_bronze_key(folder, s.sha))


def _safely(fn: Callable, *args):
    try:
        return fn(*args)
    except InputFileError as exc:
        return exc


def _manifest_row(
    sniffed: CsvFile, source: str, sha: str, key: str, landed_at: datetime, currency: str, origin: str | None = None
) -> dict:
    """A file's manifest row, but its ``landed_seq`` and ``size_bytes``."""
    return {
        "object_id": sha,
        "landed_seq": None,
        "kind": "csv",
        "source": source,
        "source_system": f"csv:{source}",
        "original_name": sniffed.path.name,
        "original_path": origin or str(sniffed.path.absolute()),
        "size_bytes": None,
        "bronze_uri": key,
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


def _date_formats(
    candidates: list[tuple[CsvFile, str, str]], overrides: CsvOverrides, known_formats: dict[str, str]
) -> list[CsvFile]:
    """The sniffed files of ``candidates`` (file, source, sha) with their source's date
    format; raises InputFileError when a source's cannot be decided."""
    undecided = undecided_sources([c[0] for c in candidates], [c[1] for c in candidates], known_formats)
    if undecided:  # look deeper into those sources' files before asking the user
        # in the encoding the quick look decided: a byte past the head is its record's
        # problem (the reader quarantines it), not the file's (README "Encoding")
        candidates = [
            (
                sniff(c.path, replace(overrides, encoding=c.encoding), deep=True) or c if src in undecided else c,
                src,
                sha,
            )
            for c, src, sha in candidates
        ]
    return resolve_date_formats([c[0] for c in candidates], [c[1] for c in candidates], known_formats)


def _ingest_folder(landed_at: datetime) -> str:
    """Where (the key prefix) the objects of an ingest (or a reparse) started at
    ``landed_at`` land."""
    return f"bronze/csv/ingest_date={landed_at:%Y-%m-%d}"


def _store_and_sniff(
    files: list[Path], known_ids: set[str], objects: ObjectStore, folder: str, overrides: CsvOverrides
) -> tuple[list[_Stored | InputFileError], list | None]:
    """Each file stored (hashed and, unless known, written) on the landing threads while a
    child process sniffs them all; the child's answers only when something new was stored
    (None: the caller sniffs the few files itself, or has nothing to sniff)."""
    sniffer = _start_sniffing(files, overrides)
    try:
        with ThreadPoolExecutor(max_workers=LANDING_THREADS) as pool:
            stored = list(pool.map(lambda p: _safely(_store, p, known_ids, objects, folder), files))
        # nothing new (a folder landed again): no need to wait for the child
        fresh = any(isinstance(o, _Stored) and not o.already_landed for o in stored)
        return stored, sniffer.answers() if sniffer and fresh else None
    finally:
        if sniffer:
            sniffer.stop()


def _sort_stored(
    files: list[Path],
    stored: list[_Stored | InputFileError],
    sniffs: list | None,
    overrides: CsvOverrides,
    result: LandResult,
    progress: Callable[[int, int], None] | None,
) -> tuple[list[_Stored], list[tuple[_Stored, CsvFile]]]:
    """The objects this ingest wrote, and those of them whose file can land with its
    sniff; errors, files landed before (or twice in this ingest) and header-only files go
    to ``result``."""
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
        sniffed = result.usable(path, sniffs[index] if sniffs is not None else _safely(sniff, path, overrides))
        if sniffed is not None:
            staged.append((outcome, sniffed))
    return written, staged


def _numbered_rows(
    lake: Lake,
    folder: str,
    resolved: list[CsvFile],
    candidates: list[tuple[CsvFile, str, str]],
    landed_at: datetime,
    currency: str,
    top_seq: int,
    origins: Mapping[Path, str],
) -> list[dict]:
    """The manifest rows of the files that land, numbered on from ``top_seq``."""
    rows = []
    for seq, (sniffed, (_, src, sha)) in enumerate(zip(resolved, candidates), start=top_seq + 1):
        key = _bronze_key(folder, sha)
        rows.append(
            _manifest_row(sniffed, src, sha, key, landed_at, currency, origins.get(sniffed.path))
            | {"landed_seq": seq, "size_bytes": lake.objects.size(key)}
        )
    return rows


def land_csv(
    lake: Lake,
    paths: list[Path],
    source: str | None = None,
    overrides: CsvOverrides = CsvOverrides(),
    currency: str = "USD",
    progress: Callable[[int, int], None] | None = None,
    origins: Mapping[Path, str] | None = None,
) -> LandResult:
    """Land CSV files (or folders of them) in bronze. The caller holds the lake lock.
    ``origins``: where files staged from a bucket came from (their manifest's
    ``original_path``, see :mod:`saleslake.sources.remote`).

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
    folder = _ingest_folder(landed_at)
    stored, sniffs = _store_and_sniff(files, known_ids, lake.objects, folder, overrides)
    written, staged = _sort_stored(files, stored, sniffs, overrides, result, progress)
    landing = {s.sha for s, _ in staged}
    _unland(lake.objects, folder, [w for w in written if w.sha not in landing])
    if not staged:
        return result
    candidates = [(sniffed, source or default_source(s.path), s.sha) for s, sniffed in staged]
    try:
        resolved = _date_formats(candidates, overrides, known_formats)
    except InputFileError as exc:
        _unland(lake.objects, folder, [s for s, _ in staged])
        result.errors.append(exc)
        return result
    rows = _numbered_rows(lake, folder, resolved, candidates, landed_at, currency, top_seq, origins or {})
    if rows:
        crash_point("bronze.manifest.before_commit")
        _append_manifest(lake, rows)
        crash_point("bronze.manifest.after_commit")
    result.landed = rows
    return result


#: What a reparse may change: a manifest row's dialect, source and currency.
REPARSED_FIELDS = ("source", "encoding", "delimiter", "decimal", "date_format", "header", "columns", "currency")


def _effective_landings(lake: Lake, object_ids: set[str]) -> dict[str, dict]:
    """Per object id: its latest manifest row (the parse silver holds or will hold), with
    ``version_seq``, the landing sequence of its original landing."""
    if not object_ids:
        return {}
    table = open_delta(lake.manifest)
    if table is None:
        return {}
    replaces = "replaces_seq" if _has_replaces(table) else "CAST(NULL AS BIGINT)"
    ids = ", ".join("'" + i + "'" for i in sorted(object_ids) if all(c in "0123456789abcdef" for c in i))
    con = snapshot_connection(lake)
    try:
        rows = (
            con.sql(
                f"""
                SELECT *, coalesce({replaces}, landed_seq) AS version_seq
                FROM ({snapshot_view_sql(table)}) m
                WHERE kind = 'csv' AND object_id IN ({ids or "NULL"})
                QUALIFY row_number() OVER (PARTITION BY object_id ORDER BY landed_seq DESC) = 1
                """
            )
            .to_arrow_table()
            .to_pylist()
        )
    finally:
        con.close()
    return {r["object_id"]: r for r in rows}


def _parse_counts(lake: Lake, versions: list[int]) -> dict[int, dict]:
    """Per original landing in ``versions``: the manifest's ``replaces_*`` counts of the
    rows silver and its quarantine hold from it (a file's rows come from one batch)."""
    if not versions:
        return {}
    parts = []
    for path, quarantined in ((lake.sales_lines, "false"), (lake.quarantine, "true")):
        table = open_delta(path)
        if table is not None:
            parts.append(
                f"SELECT landed_seq, batch_id, {quarantined} AS quarantined FROM ({snapshot_view_sql(table)}) s "
                f"WHERE s.source_system LIKE 'csv:%' AND s.landed_seq IN ({', '.join(map(str, versions))})"
            )
    if not parts:
        return {}
    con = snapshot_connection(lake)
    try:
        counts = con.sql(
            f"""SELECT landed_seq, max(CAST(split_part(batch_id, '-', -1) AS BIGINT)), count(*),
                       count(*) FILTER (WHERE quarantined)
                FROM ({" UNION ALL ".join(parts)}) GROUP BY landed_seq"""
        ).fetchall()
    finally:
        con.close()
    return {
        seq: {"replaces_batch_seq": batch, "replaces_rows": rows, "replaces_quarantined": bad}
        for seq, batch, rows, bad in counts
    }


def replaced_parses(lake: Lake, processed_seq: int) -> list[dict]:
    """The earlier parses that processed reparses (landed_seq <= ``processed_seq``) took out
    of silver: ``batch_seq`` (the last landing sequence of the batch that had written them),
    ``rows`` and ``quarantined``; one entry per parse, however many reparses named it."""
    table = open_delta(lake.manifest)
    if table is None or "replaces_batch_seq" not in pa.schema(table.schema()).names:
        return []
    con = snapshot_connection(lake)
    try:
        rows = con.sql(
            f"""SELECT DISTINCT replaces_seq, replaces_batch_seq, replaces_rows, replaces_quarantined
                FROM ({snapshot_view_sql(table)}) m
                WHERE replaces_batch_seq IS NOT NULL AND landed_seq <= {int(processed_seq)}"""
        ).fetchall()
    finally:
        con.close()
    return [{"batch_seq": batch, "rows": n, "quarantined": bad} for _, batch, n, bad in rows]


def _hashed(paths: list[Path], result: LandResult) -> list[tuple[Path, str]]:
    """Each file with its sha256 (how the manifest knows it); one that cannot be read goes
    to ``result.errors``."""
    files: list[tuple[Path, str]] = []
    for path in expand_paths(paths):
        try:
            files.append((path, sha256_of(path)))
        except OSError as exc:
            result.errors.append(InputFileError(str(path), f"cannot be read: {exc.strerror}"))
    return files


def _reparse_candidates(
    files: list[tuple[Path, str]],
    landings: dict[str, dict],
    source: str | None,
    overrides: CsvOverrides,
    result: LandResult,
) -> list[tuple[CsvFile, str, str]]:
    """The files to parse again, sniffed afresh with ``overrides``: (file, source, sha).
    A file never landed is an error, a repeat of one already taken is already landed."""
    candidates: list[tuple[CsvFile, str, str]] = []
    seen: set[str] = set()
    for path, sha in files:
        landing = landings.get(sha)
        if landing is None:
            result.errors.append(
                InputFileError(
                    str(path), "was never landed, so there is nothing to parse again", "land it without --reparse"
                )
            )
            continue
        if sha in seen:
            result.already_landed.append(str(path))
            continue
        seen.add(sha)
        sniffed = result.usable(path, _safely(sniff, path, overrides))
        if sniffed is not None:
            candidates.append((sniffed, source or landing["source"], sha))
    return candidates


def _changed_parses(
    lake: Lake,
    resolved: list[CsvFile],
    candidates: list[tuple[CsvFile, str, str]],
    landings: dict[str, dict],
    landed_at: datetime,
    currency: str | None,
    result: LandResult,
    origins: Mapping[Path, str],
) -> list[dict]:
    """The manifest rows (not yet numbered) of the reparses that change a file's parse,
    each naming the landing it replaces and the counts of the rows that parse left in
    silver; a parse equal to the one the file has is already landed."""
    folder = _ingest_folder(landed_at)
    rows = []
    for sniffed, (_, src, sha) in zip(resolved, candidates):
        landing = landings[sha]
        row = _manifest_row(
            sniffed,
            src,
            sha,
            _bronze_key(folder, sha),
            landed_at,
            currency or landing["currency"],
            origins.get(sniffed.path),
        )
        if all(str(row[k]) == str(landing[k]) for k in REPARSED_FIELDS):
            result.already_landed.append(str(sniffed.path))
            continue
        row["replaces_seq"] = landing["version_seq"]
        rows.append(row)
    replaced = _parse_counts(lake, [r["replaces_seq"] for r in rows])
    for row in rows:
        row.update(replaced.get(row["replaces_seq"], {}))
    return rows


def _land_reparses(lake: Lake, rows: list[dict], sources: Mapping[str, Path], top_seq: int) -> None:
    """Land the bytes of each reparse (unless today's folder holds them) from its file in
    ``sources`` (by sha256), number the rows on from ``top_seq`` and commit them in one
    manifest commit; the objects written here are removed again when the commit fails
    (nothing would name them)."""
    objects = lake.objects
    created = []
    for row in rows:
        key = row["bronze_uri"]
        if _upload_verified(objects, key, sources[row["object_id"]], row["object_id"]):
            created.append(key)
        top_seq += 1
        row["landed_seq"] = top_seq
        row["size_bytes"] = objects.size(key)
    if rows:
        try:
            _append_manifest(lake, rows)
        except BaseException:
            for key in created:  # not landed after all: an object nothing names
                objects.delete(key)
            raise


def reparse_csv(
    lake: Lake,
    paths: list[Path],
    source: str | None = None,
    overrides: CsvOverrides = CsvOverrides(),
    currency: str | None = None,
    origins: Mapping[Path, str] | None = None,
) -> LandResult:
    """Parse files that already landed again with other dialect options (the caller holds
    the lake lock). Each file is recognised by its sha256 in the manifest; its dialect is
    detected afresh with ``overrides`` (its source and currency stay unless given). A file
    whose result equals the parse it already has is ``already_landed`` (rerunning a
    reparse changes nothing); one never landed is an error. Each reparse lands the bytes
    again under today's ingest date and gets a manifest row (``replaces_seq``: the original
    landing), all in one commit; the next ``run`` replaces the file's silver and
    quarantine rows with the new parse (see :mod:`saleslake.silver.process`).
    """
    result = LandResult()
    _, top_seq, known_formats = _known_state(lake)
    landed_at = utcnow()
    files = _hashed(paths, result)
    landings = _effective_landings(lake, {sha for _, sha in files})
    candidates = _reparse_candidates(files, landings, source, overrides, result)
    try:
        resolved = _date_formats(candidates, overrides, known_formats) if candidates else []
    except InputFileError as exc:
        result.errors.append(exc)
        return result
    rows = _changed_parses(lake, resolved, candidates, landings, landed_at, currency, result, origins or {})
    _land_reparses(lake, rows, {sha: path for path, sha in files}, top_seq)
    result.reparsed = rows
    return result
