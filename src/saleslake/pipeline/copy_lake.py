"""``saleslake copy-lake SRC DST``: copy a lake between a folder and ``s3://bucket/prefix``
(either way, or folder to folder, bucket to bucket) with its history, then verify it.

What a lake is here: every object under the home except what a run rebuilds or owns
while it works (:data:`NOT_THE_LAKE`: the DuckDB warehouse and dbt's files are a build
cache the next run rebuilds from gold, ``tmp/`` is scratch, ``logs/`` this machine's
tracebacks, ``services/`` the local dev servers' state, ``_saleslake/`` the S3 lease log;
hidden files are locks and partial writes). So Delta logs with every version, data files, bronze objects and the system
tables are copied byte for byte, streamed in chunks (memory stays bounded by
:data:`WORKERS` x :data:`CHUNK_BYTES` whatever the file sizes).

Order, and why a kill at any moment is safe:

1. SRC's Delta logs are listed first, then everything else: a commit listed had written
   its data files before, so they are in the second listing. A run writing SRC meanwhile
   only adds files the copied logs do not reference.
2. DST is claimed with a marker object (:data:`MARKER`, naming SRC) before any object is
   written; a DST that holds anything else (a lake, any object) is refused.
3. Data files, bronze objects, ... are copied; then each table's log in version order
   (``_last_checkpoint`` last). Every object appears whole or not at all: a temporary
   file renamed into place on disk, a single or multipart PUT on S3 (a killed multipart
   upload leaves no object). So while the copy is unfinished each table on DST is at a
   version SRC had, with all its files, and the marker says the copy is not done.
4. Verification: per object the size and the SHA-256 of its bytes read back from DST equal
   SRC's; per Delta table the version and the row count read through delta-rs on DST equal
   SRC's at the copied version. Only then is the marker removed.

A rerun after a crash finds its own marker, copies what is missing (an object already on
DST with SRC's size is complete, by the above; ``_last_checkpoint``, the one object Delta
rewrites, is always copied again) and verifies everything again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

from saleslake.config import Settings, StorageSettings
from saleslake.crashpoints import crash_point
from saleslake.errors import PipelineError, UserError
from saleslake.location import check_object_store_uri, is_object_store_uri
from saleslake.storage import delta_storage_options, s3_filesystem
from saleslake.storage.failures import s3_failure

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

#: Read and write unit; also the part size of S3 multipart uploads (at least 5 MiB).
CHUNK_BYTES = 8 << 20
#: Objects copied or hashed at once (S3 round trips overlap; memory is WORKERS x CHUNK_BYTES).
WORKERS = 4
#: The claim of an unfinished copy on DST: {"source": SRC, "started_at": ...}.
MARKER = "_saleslake/copy-lake.json"
#: Top-level names under a lake home that are not the lake, and why.
NOT_THE_LAKE = {
    "warehouse.duckdb": "the build cache the next run rebuilds from gold",
    "warehouse.duckdb.wal": "the build cache's journal",
    "dbt": "dbt's logs and compiled files",
    "tmp": "scratch space of a run",
    "logs": "tracebacks of unexpected errors on this machine",
    "services": "local dev servers' state",
    "_saleslake": "leases and probes of the running commands",
}
DELTA_LOG = "_delta_log"
LAST_CHECKPOINT = "_last_checkpoint"
_VERSION = re.compile(r"^(\d{20})\.")

T = TypeVar("T")


@dataclass(frozen=True)
class Place:
    """A lake's location: a folder or ``s3://bucket/prefix``, and the filesystem reaching it."""

    uri: str  # as shown to the user
    fs: AbstractFileSystem
    root: str  # the filesystem path of the home, without a trailing /
    storage: StorageSettings | None = None  # None: a local folder
    bucket: str = ""

    @property
    def is_s3(self) -> bool:
        return self.storage is not None

    def path(self, key: str) -> str:
        return f"{self.root}/{key}"

    def table_uri(self, folder: str) -> str:
        return f"s3://{self.root}/{folder}" if self.is_s3 else self.path(folder)

    def storage_options(self) -> dict[str, str] | None:
        return delta_storage_options(self.storage) if self.storage is not None else None


@dataclass
class CopyResult:
    source: str
    target: str
    objects: int  # lake objects on both sides, verified
    bytes: int
    copied: int  # objects written by this call (the rest were there from an interrupted one)
    copied_bytes: int
    tables: dict[str, tuple[int, int]] = field(default_factory=dict)  # folder -> (version, rows)
    left_out: list[str] = field(default_factory=list)  # top-level names not copied (NOT_THE_LAKE)
    resumed: bool = False
    seconds: float = 0.0


def place(text: str, storage: StorageSettings) -> Place:
    """A folder path or ``s3://bucket[/prefix]``; a UserError for anything else."""
    text = str(text).strip()
    if is_object_store_uri(text):
        try:
            uri = check_object_store_uri(text)  # the rules of a lake home (--home s3://...)
        except ValueError as exc:
            raise UserError(f"copy-lake: {exc}") from None
        root = uri[len("s3://") :]
        return Place(uri, s3_filesystem(storage), root, storage, root.split("/")[0])
    if not text:
        raise UserError("copy-lake: an empty location: give a folder or s3://bucket/prefix")
    from fsspec.implementations.local import LocalFileSystem

    folder = Path(text).expanduser().absolute()
    return Place(str(folder), LocalFileSystem(auto_mkdir=True), folder.as_posix().rstrip("/"))


def belongs_to_lake(key: str) -> bool:
    parts = key.split("/")
    return parts[0] not in NOT_THE_LAKE and not any(p.startswith(".") for p in parts)


def is_log(key: str) -> bool:
    return DELTA_LOG in key.split("/")[:-1]


def table_of(key: str) -> str:
    """The folder of the Delta table whose log holds ``key``."""
    parts = key.split("/")
    return "/".join(parts[: parts.index(DELTA_LOG)])


def copy_lake(source: str, target: str, settings: Settings) -> CopyResult:
    """Copy the lake at ``source`` to ``target`` and verify it (see the module docstring)."""
    started = time.monotonic()
    src, dst = place(source, settings.storage), place(target, settings.storage)
    _refuse_overlap(src, dst)
    if not src.is_s3 and not Path(src.root).is_dir():
        raise UserError(f"copy-lake: {src.uri} does not exist")

    with _store_errors(src):
        logs_listed = {k: n for k, n in _objects(src).items() if is_log(k)}  # logs first: see the docstring
        everything = _objects(src)
    logs = {k: n for k, n in logs_listed.items() if belongs_to_lake(k)}
    data = {k: n for k, n in everything.items() if belongs_to_lake(k) and not is_log(k)}
    if not logs:
        what = "holds no objects" if not everything else "holds no lake (no Delta table)"
        raise UserError(f"copy-lake: {src.uri} {what}")
    left_out = sorted({k.split("/")[0] for k in everything if not belongs_to_lake(k)})

    with _store_errors(dst):
        present = _objects(dst)
        resumed = _claim(dst, src, present)

    hashes: dict[str, str] = {}
    with _store_errors(src, dst):
        todo = [k for k in sorted(data) if present.get(k) != data[k]]
        _parallel(lambda key: _copy_into(hashes, src, dst, key), todo)
        per_table: dict[str, list[str]] = {}
        for key in sorted(logs):  # version order within a table; _last_checkpoint sorts last
            if present.get(key) != logs[key] or key.endswith(f"/{LAST_CHECKPOINT}"):
                per_table.setdefault(table_of(key), []).append(key)

        def copy_log(keys: list[str]) -> None:  # one table's log, in order: tables in parallel
            for key in keys:
                _copy_into(hashes, src, dst, key)

        _parallel(copy_log, per_table.values())
        wanted = {**data, **logs}
        copied, copied_bytes = len(hashes), sum(wanted[k] for k in hashes)
        _verify_objects(src, dst, wanted, hashes)
        tables = _verify_tables(src, dst, logs)
        _remove(dst, MARKER)
        if not dst.is_s3:  # the marker's folder, now empty (S3 has no folders)
            with contextlib.suppress(OSError):
                Path(dst.path(MARKER)).parent.rmdir()

    return CopyResult(
        source=src.uri,
        target=dst.uri,
        objects=len(wanted),
        bytes=sum(wanted.values()),
        copied=copied,
        copied_bytes=copied_bytes,
        tables=tables,
        left_out=left_out,
        resumed=resumed,
        seconds=round(time.monotonic() - started, 3),
    )


# -- the two places -----------------------------------------------------------------------------


def _refuse_overlap(src: Place, dst: Place) -> None:
    if src.is_s3 != dst.is_s3:
        return
    a, b = src.root + "/", dst.root + "/"
    if a.startswith(b) or b.startswith(a):
        raise UserError(f"copy-lake: {src.uri} and {dst.uri} overlap: copy to another folder or prefix")


@contextlib.contextmanager
def _store_errors(*places: Place) -> Iterator[None]:
    """A failed request to an object store as one UserError line naming endpoint and bucket."""
    try:
        yield
    except (UserError, PipelineError):
        raise
    except Exception as exc:
        s3 = [p for p in places if p.storage is not None]
        if s3 and s3[0].storage is not None:
            buckets = " or ".join(sorted({p.bucket for p in s3}))
            message = s3_failure(exc, s3[0].storage, buckets)
            if message is not None:
                raise UserError(f"copy-lake: {message}") from None
        raise


def _objects(where: Place) -> dict[str, int]:
    """Every object under the place: key (relative, with /) -> size in bytes."""
    found: dict[str, Any] = where.fs.find(where.root, detail=True)
    prefix = where.root + "/"
    return {
        path[len(prefix) :]: int(info["size"])
        for path, info in found.items()
        if info.get("type") == "file" and path.startswith(prefix)
    }


def _claim(dst: Place, src: Place, present: dict[str, int]) -> bool:
    """Mark DST as this copy's (True when it already was: a rerun); refuse a DST holding
    anything but the local services' state."""
    if MARKER in present:
        recorded = json.loads(dst.fs.cat_file(dst.path(MARKER))).get("source")
        if recorded != src.uri:
            raise UserError(
                f"copy-lake: {dst.uri} holds an unfinished copy of {recorded}: "
                f"finish it (copy-lake {recorded} {dst.uri}) or choose another DST"
            )
        for key in present:  # partial files of the interrupted copy (local DST only)
            if key.split("/")[-1].startswith(".") and key.endswith(".tmp"):
                _remove(dst, key)
        return True
    occupied = [k for k in present if k.split("/")[0] != "services"]
    if occupied:
        what = "a lake" if any(is_log(k) for k in occupied) else f"{len(occupied):,} objects"
        raise UserError(f"copy-lake: {dst.uri} already holds {what}: choose an empty folder or prefix")
    claim = {"source": src.uri, "started_at": datetime.now(UTC).isoformat(timespec="seconds")}
    dst.fs.pipe_file(dst.path(MARKER), json.dumps(claim).encode())
    return False


def _remove(where: Place, key: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        where.fs.rm_file(where.path(key))


# -- copying ------------------------------------------------------------------------------------


def _parallel(work: Callable[[T], object], items: Iterable[T]) -> None:
    with ThreadPoolExecutor(WORKERS) as pool:
        for _ in pool.map(work, items):  # re-raises the first failure
            pass


def _copy_into(hashes: dict[str, str], src: Place, dst: Place, key: str) -> None:
    hashes[key] = _copy_object(src, dst, key)
    if is_log(key):
        crash_point("copy_lake.log_copied")
    else:
        crash_point("copy_lake.object_copied")


def _copy_object(src: Place, dst: Place, key: str) -> str:
    """Stream one object from SRC to DST; the SHA-256 of the bytes read."""
    digest = hashlib.sha256()
    try:
        reader = src.fs.open(src.path(key), "rb", block_size=CHUNK_BYTES)
    except FileNotFoundError:
        raise UserError(
            f"copy-lake: {src.uri}/{key} disappeared during the copy (retention ran on SRC?): rerun copy-lake"
        ) from None
    with reader, _writer(dst, key) as out:
        while chunk := reader.read(CHUNK_BYTES):
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def _writer(dst: Place, key: str) -> Iterator[IO[bytes]]:
    """A file that appears at ``key`` whole when the block ends, and not at all when it fails."""
    if not dst.is_s3:
        target = Path(dst.path(key))
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        try:
            with open(scratch, "wb") as out:
                yield out
            os.replace(scratch, target)
        finally:
            scratch.unlink(missing_ok=True)
        return
    upload = dst.fs.open(dst.path(key), "wb", block_size=CHUNK_BYTES)
    try:
        yield upload
    except BaseException:
        upload.discard()  # abort the multipart upload: no partial object
        upload.closed = True  # close() would commit what was buffered
        raise
    upload.close()


def _digest(where: Place, key: str) -> str:
    digest = hashlib.sha256()
    with where.fs.open(where.path(key), "rb", block_size=CHUNK_BYTES) as reader:
        while chunk := reader.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


# -- verifying ----------------------------------------------------------------------------------


def _verify_objects(src: Place, dst: Place, wanted: dict[str, int], src_hashes: dict[str, str]) -> None:
    """Per object: DST's size and the SHA-256 of its bytes equal SRC's."""
    on_dst = _objects(dst)
    wrong_size = [k for k, n in wanted.items() if on_dst.get(k) != n]
    if wrong_size:
        key = wrong_size[0]
        raise PipelineError(
            f"copy-lake: {len(wrong_size):,} object(s) missing or of another size on {dst.uri} "
            f"(first: {key}, {on_dst.get(key)} bytes, expected {wanted[key]}): rerun copy-lake"
        )
    keys = sorted(wanted)
    dst_hashes: dict[str, str] = {}

    def check(key: str) -> None:
        if key not in src_hashes:  # copied by an interrupted run: read SRC too
            src_hashes[key] = _digest(src, key)
        dst_hashes[key] = _digest(dst, key)

    _parallel(check, keys)
    differ = [k for k in keys if src_hashes[k] != dst_hashes[k]]
    if differ:
        raise PipelineError(
            f"copy-lake: {len(differ):,} object(s) on {dst.uri} differ from SRC (first: {differ[0]}): rerun copy-lake"
        )


def _verify_tables(src: Place, dst: Place, logs: dict[str, int]) -> dict[str, tuple[int, int]]:
    """Per Delta table: version and row count through delta-rs on DST equal SRC's at the
    copied version (SRC may have moved on since its log was listed)."""
    from deltalake import DeltaTable

    versions: dict[str, int] = {}
    for key in logs:
        found = _VERSION.match(key.rsplit("/", 1)[-1])
        if found:
            folder = table_of(key)
            versions[folder] = max(versions.get(folder, -1), int(found.group(1)))
    tables: dict[str, tuple[int, int]] = {}
    for folder, version in sorted(versions.items()):
        original = DeltaTable(src.table_uri(folder), version=version, storage_options=src.storage_options())
        copy = DeltaTable(dst.table_uri(folder), storage_options=dst.storage_options())
        rows = original.to_pyarrow_dataset().count_rows()
        copy_rows = copy.to_pyarrow_dataset().count_rows()
        if copy.version() != version or copy_rows != rows:
            raise PipelineError(
                f"copy-lake: table {folder} on {dst.uri} is at version {copy.version()} with {copy_rows:,} rows, "
                f"SRC at version {version} with {rows:,}: rerun copy-lake"
            )
        tables[folder] = (version, rows)
    return tables
