"""Where things live in the lake, and the Delta/DuckDB plumbing every stage shares.

Layout under ``home``::

    bronze/csv/ingest_date=YYYY-MM-DD/<sha256>.csv   raw files, content-addressed
    bronze/events/pos                                  Kafka records as received (Delta)
    silver/sales_lines, silver/quarantine              Delta tables
    gold/<table>                                       Delta tables published by dbt runs
    system/bronze_manifest, system/runs                Delta tables (positions, ledger)
    .lock                                              the run lock

and under ``Lake.work`` (the home of a local lake; a local folder for a lake in a bucket)::

    warehouse.duckdb                                   the dbt build target (writers only)
    dbt/target, dbt/logs                               dbt's output
    tmp/                                               local scratch
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import InitVar, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import overload
from urllib.parse import unquote

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pds
import pyarrow.fs as pafs
from deltalake import ColumnProperties, CommitProperties, DeltaTable, WriterProperties, write_deltalake
from deltalake.exceptions import TableNotFoundError
from deltalake.transaction import AddAction, RemoveAction

from saleslake.config import StorageSettings
from saleslake.crashpoints import crash_point
from saleslake.errors import UserError
from saleslake.location import LakeLocation, parse_home
from saleslake.storage import delta_storage_options, s3_filesystem, shared_s3_filesystem
from saleslake.storage.lease import check_commit
from saleslake.storage.objects import LocalObjects, ObjectStore, S3Objects


class _Below:
    """A location under the lake's home, read as ``lake.<name>`` (a :class:`Path`): the
    layout above, written as one line per location in :class:`Lake`. Local lakes only:
    on an object-store lake reading one is a :class:`UserError` (see :attr:`Lake.home`)."""

    #: the Lake property the parts are joined to
    root = "home"

    def __init__(self, *parts: str) -> None:
        self.parts = parts

    @overload
    def __get__(self, lake: None, owner: type[Lake]) -> _Below: ...
    @overload
    def __get__(self, lake: Lake, owner: type[Lake] | None = None) -> Path: ...
    def __get__(self, lake: Lake | None, owner: type[Lake] | None = None) -> Path | _Below:
        return self if lake is None else getattr(lake, self.root).joinpath(*self.parts)


class _Work(_Below):
    """A local scratch location under :attr:`Lake.work`: the home of a local lake, a
    local folder for an object-store one."""

    root = "work"


@dataclass(frozen=True)
class TableLocation:
    """Where a Delta table lives: what delta-rs opens (``uri`` with ``storage_options``),
    and the folder when the lake is local. Made by :class:`Lake`; a :class:`Path` is taken
    wherever a TableLocation is (a local table)."""

    uri: str
    storage_options: Mapping[str, str] | None = field(default=None, compare=False, repr=False)
    local: Path | None = None

    @classmethod
    def of(cls, where: TableLocation | Path | str) -> TableLocation:
        if isinstance(where, TableLocation):
            return where
        path = Path(where).absolute()
        return cls(str(path), None, path)

    @property
    def name(self) -> str:
        return self.uri.rstrip("/").rsplit("/", 1)[-1]

    def __str__(self) -> str:
        return self.uri


class _Table:
    """A Delta table under the lake's home, read as ``lake.<name>`` (a
    :class:`TableLocation`): works on local and object-store lakes."""

    def __init__(self, *parts: str) -> None:
        self.parts = parts

    def __get__(self, lake: Lake, owner: type[Lake] | None = None) -> TableLocation:
        return lake.table(*self.parts)


@dataclass(frozen=True)
class Lake:
    """The lake at ``where`` (a folder, or ``s3://bucket/prefix``, see
    :mod:`saleslake.location`); ``storage``: the ``[storage]`` settings an object-store
    lake is reached with (ignored for a local one).

    Delta tables (the ``_Table`` names, :meth:`table`, :meth:`gold_table`) work on both.
    ``tmp``, ``warehouse`` and ``dbt`` are local files on both (:attr:`work`). Everything
    else (``home`` and the ``_Below`` paths: bronze objects, the lock, heartbeats) is
    local only so far."""

    where: InitVar[str | Path | LakeLocation]
    storage: StorageSettings = field(default_factory=StorageSettings, compare=False, repr=False)
    location: LakeLocation = field(init=False)

    bronze = _Below("bronze")
    # Kafka records as received (Delta), see saleslake.pipeline.stream
    bronze_events = _Table("bronze", "events", "pos")
    sales_lines = _Table("silver", "sales_lines")
    quarantine = _Table("silver", "quarantine")
    manifest = _Table("system", "bronze_manifest")
    runs = _Table("system", "runs")
    gold_releases = _Table("system", "gold_releases")
    oltp_positions = _Table("system", "oltp_positions")
    pos_line_keys = _Table("system", "pos_line_keys")
    gold = _Below("gold")
    lock_file = _Below(".lock")
    # local on every lake (Lake.work): the dbt build target (writers only), dbt's
    # target/ and logs/, DuckDB's spill files and other scratch
    warehouse = _Work("warehouse.duckdb")
    dbt = _Work("dbt")
    tmp = _Work("tmp")

    def __post_init__(self, where: str | Path | LakeLocation) -> None:
        object.__setattr__(self, "location", parse_home(where))

    @property
    def is_local(self) -> bool:
        return self.location.is_local

    @property
    def home(self) -> Path:
        """The lake's folder. An object-store lake has none: what still needs one is
        refused with one line (see :func:`require_local`)."""
        if self.location.local is None:
            raise UserError(
                f"{self.location.uri}: this step needs local files, which is not supported on an object-store lake yet"
            )
        return self.location.local

    @property
    def work(self) -> Path:
        """Where this lake's local files live (the ``_Work`` paths: ``tmp``, the warehouse
        file, dbt's output): its home when the lake is a folder. DuckDB and dbt need local
        files, so an object-store lake's is ``storage.work_dir``, by default a folder of
        the user's cache named after the lake's URI: ``$XDG_CACHE_HOME`` (default
        ``~/.cache``) ``/saleslake/<first 16 hex of the URI's sha256>``. What is there is
        a cache: an empty work dir rebuilds the warehouse from the lake (a full gold build)."""
        if self.location.local is not None:
            return self.location.local
        if self.storage.work_dir is not None:
            return self.storage.work_dir.expanduser().absolute()
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        return cache / "saleslake" / hashlib.sha256(self.location.uri.encode()).hexdigest()[:16]

    @cached_property
    def storage_options(self) -> dict[str, str] | None:
        """delta-rs ``storage_options`` for this lake's tables (None for a local lake)."""
        return None if self.is_local else delta_storage_options(self.storage)

    @cached_property
    def objects(self) -> ObjectStore:
        """The lake's plain objects (bronze files), by key relative to the home
        (``bronze/csv/ingest_date=…/<sha256>.csv``, as the manifest's ``bronze_uri``): the
        same key names an object in a folder and in a bucket, so a copied lake stays valid."""
        if self.location.local is not None:
            return LocalObjects(self.location.local)
        root = "/".join(p for p in (self.location.bucket, self.location.prefix) if p)
        return S3Objects(shared_s3_filesystem(self.storage), root)

    def table(self, *parts: str) -> TableLocation:
        """The Delta table at ``parts`` under the home (e.g. ``"silver", "sales_lines"``)."""
        return TableLocation(
            self.location.join(*parts),
            self.storage_options,
            self.location.local and self.location.local.joinpath(*parts),
        )

    def gold_table(self, name: str) -> TableLocation:
        return self.table("gold", name)

    def reference_table(self, name: str) -> TableLocation:
        return self.table("silver", f"reference_{name}")

    def register_filesystem(self, con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
        """Let DuckDB read this lake's objects (``read_parquet('s3://…')``) through s3fs:
        DuckDB cannot download its httpfs extension here. Nothing to do for a local lake,
        nor when the connection has it already (DuckDB refuses a second one)."""
        if not self.is_local and "s3" not in con.list_filesystems():
            con.register_filesystem(s3_filesystem(self.storage))
        return con

    def delta_tables(self) -> dict[str, TableLocation]:
        """Every Delta table readers may query, by ``schema.table`` name."""
        tables = {
            "silver.sales_lines": self.sales_lines,
            "silver.quarantine": self.quarantine,
            "silver.reference_stores": self.reference_table("stores"),
            "silver.reference_products": self.reference_table("products"),
            "silver.reference_customers": self.reference_table("customers"),
            "system.oltp_positions": self.oltp_positions,
            "bronze.pos_events": self.bronze_events,
            "system.bronze_manifest": self.manifest,
            "system.runs": self.runs,
            "system.gold_releases": self.gold_releases,
            "system.pos_line_keys": self.pos_line_keys,
        }
        for name in self.gold_table_names():
            tables[f"gold.{name}"] = self.gold_table(name)
        return tables

    def gold_table_names(self) -> list[str]:
        """The Delta tables under ``gold/``, sorted."""
        if self.location.local is None:
            fs = s3_filesystem(self.storage)
            root = self.location.join("gold").removeprefix("s3://")
            children = fs.ls(root, detail=False) if fs.isdir(root) else []
            names = (str(c).rstrip("/").rsplit("/", 1)[-1] for c in children)
            return sorted(n for n in names if fs.isdir(f"{root}/{n}/_delta_log"))
        if not self.gold.is_dir():
            return []
        return sorted(child.name for child in self.gold.iterdir() if (child / "_delta_log").is_dir())


def require_local(lake: Lake, what: str) -> None:
    """Refuse ``what`` (e.g. "`saleslake run`") on an object-store lake, in one line."""
    if not lake.is_local:
        raise UserError(
            f"{what} is not supported on an object-store lake ({lake.location.uri}) yet; use a local --home"
        )


def open_delta(where: TableLocation | Path, version: int | None = None) -> DeltaTable | None:
    """The table at ``where`` (at ``version``, else the latest), or None when no table was
    created there yet. The one place tables are opened: the lake's storage options go with it."""
    loc = TableLocation.of(where)
    try:
        return DeltaTable(loc.uri, version=version, storage_options=_options(loc))
    except TableNotFoundError:
        return None


def read_delta(where: TableLocation | Path, version: int | None = None) -> DeltaTable:
    """The table at ``where``, which must exist (:func:`open_delta` when it may not)."""
    loc = TableLocation.of(where)
    return DeltaTable(loc.uri, version=version, storage_options=_options(loc))


def write_delta(where: TableLocation | Path | DeltaTable, data, **options) -> None:
    """``write_deltalake`` to the table at ``where`` (created when absent), with the
    lake's storage options; ``options``: write_deltalake's (mode, partition_by, ...).
    A lease this context holds on the lake is checked first (a run that lost it stops)."""
    check_commit(where.table_uri if isinstance(where, DeltaTable) else TableLocation.of(where).uri)
    if isinstance(where, DeltaTable):
        write_deltalake(where, data, **options)
        return
    loc = TableLocation.of(where)
    if loc.local is not None:
        loc.local.mkdir(parents=True, exist_ok=True)
    write_deltalake(loc.uri, data, storage_options=_options(loc), **options)


def _options(loc: TableLocation) -> dict[str, str] | None:
    return dict(loc.storage_options) if loc.storage_options else None


#: Columns whose values are (nearly) all distinct. A Parquet dictionary only costs time
#: on them: the writer builds one per page, finds it too big and falls back to plain
#: (the 10M-line gold fact's Delta write, each in a fresh process: 8.1-8.6 s -> 7.8-8.2 s;
#: silver's writes run beside its queries, where the difference is lost in the noise).
DISTINCT_COLUMNS = ("line_key", "row_hash", "order_id", "line_id", "quarantine_key", "event_id")


def writer_properties() -> WriterProperties:
    """How every bulk Delta write of lines writes its Parquet (columns absent from a
    table's schema are ignored)."""
    return WriterProperties(column_properties={c: ColumnProperties(dictionary_enabled=False) for c in DISTINCT_COLUMNS})


def ensure_delta(where: TableLocation | Path, schema: pa.Schema, partition_by: list[str] | None = None) -> DeltaTable:
    """Open the table, creating it empty with ``schema`` when it does not exist."""
    table = open_delta(where)
    if table is None:
        write_delta(where, schema.empty_table(), mode="ignore", partition_by=partition_by)
        table = read_delta(where)
    return table


def txn_version(where: TableLocation | Path, app_id: str) -> int:
    """The application-transaction version committed with the data (-1 when none)."""
    table = open_delta(where)
    if table is None:
        return -1
    version = table.transaction_version(app_id)
    return -1 if version is None else int(version)


def duckdb_type_sql(schema: pa.Schema) -> list[tuple[str, str]]:
    """(column, DuckDB type) pairs for an Arrow schema."""
    con = duckdb.connect()
    try:
        rel = con.from_arrow(schema.empty_table())
        return [(name, str(typ)) for name, typ in zip(rel.columns, rel.types)]
    finally:
        con.close()


def files_overlapping(table: DeltaTable, column: str, low, high) -> list[str] | None:
    """The snapshot's files whose Delta statistics allow a ``column`` value in [low, high],
    as :meth:`DeltaTable.file_uris` names them; None when that cannot be decided (then read
    every file). A file without statistics for the column is kept: pruning never loses a row.
    """
    actions = pa.table(table.get_add_actions(flatten=True))
    lo, hi = f"min.{column}", f"max.{column}"
    if not actions.num_rows or lo not in actions.column_names or hi not in actions.column_names:
        return None
    low, high = pa.scalar(low, actions[lo].type), pa.scalar(high, actions[hi].type)
    unknown = pc.or_(pc.is_null(actions[lo]), pc.is_null(actions[hi]))
    overlaps = pc.and_(pc.less_equal(actions[lo], high), pc.greater_equal(actions[hi], low))
    kept = actions.filter(pc.fill_null(pc.or_kleene(unknown, overlaps), True))["path"].to_pylist()
    root = table.table_uri.removeprefix("file://").rstrip("/")
    uris = [f"{root}/{unquote(path)}" for path in kept]
    if not set(uris) <= set(table.file_uris()):
        return None  # a storage layout these names do not match: no pruning
    return uris


def _local_root(table: DeltaTable) -> Path:
    if not _is_local_table(table):
        raise UserError(f"{table.table_uri} is not a local table")
    return Path(unquote(table.table_uri.removeprefix("file://"))).absolute()


def _is_local_table(table: DeltaTable) -> bool:
    return "://" not in table.table_uri or table.table_uri.startswith("file://")


#: Where :func:`replace_files` writes before moving files into the table: a hidden
#: folder (a leading underscore) that Delta readers and VACUUM ignore.
STAGING_DIR = "_saleslake_staging"
STALE_STAGING_SECONDS = 3600


def replace_files(
    table: DeltaTable,
    rows: pa.RecordBatchReader,
    remove: list[str],
    partition_by: list[str],
    commit_properties: CommitProperties,
) -> None:
    """One Delta commit that adds ``rows`` as new files and removes the files ``remove``
    (as :meth:`DeltaTable.file_uris` names them), with ``commit_properties`` (positions).

    A copy-on-write MERGE without the join: the caller already knows which files hold
    rows being replaced and passes their surviving rows in ``rows``. delta-rs writes the
    files (and their statistics) into a scratch table under the table's
    ``_saleslake_staging/``; they are moved to the keys they have there relative to the
    table's root (a rename on a disk; a server-side copy and a delete on an object
    store, through delta-rs's own object store) and committed with the removes. The
    table's layout is the one a plain write gives. A crash before the commit leaves only
    files no version references (VACUUM removes those) and a scratch folder (removed by
    a later rewrite once older than :data:`STALE_STAGING_SECONDS`): the table reads as
    before and a rerun writes afresh.

    The commit is an append that records no read of the files it rewrites, so Delta's
    conflict check would not catch a concurrent writer adding a newer version of a
    replaced row: callers hold ``runs.silver_commit_lock`` and pass a snapshot read under it.
    """
    staging = _LocalStaging(_local_root(table)) if _is_local_table(table) else _ObjectStaging(table)
    staging.drop_stale()
    scratch = f"{STAGING_DIR}/{uuid.uuid4().hex}"
    try:
        write_deltalake(
            staging.uri(scratch),
            rows,
            mode="append",
            partition_by=partition_by,
            writer_properties=writer_properties(),
            storage_options=staging.storage_options,
        )
        adds = []
        for line in staging.read_text(f"{scratch}/_delta_log/{0:020d}.json").splitlines():
            add = json.loads(line).get("add")
            if add is None:
                continue
            relative = unquote(add["path"])
            staging.move_in(f"{scratch}/{relative}", relative)
            adds.append(
                AddAction(
                    add["path"],
                    int(add["size"]),
                    add["partitionValues"],
                    int(add["modificationTime"]),
                    True,
                    add.get("stats") or "",
                )
            )
        removes = _remove_actions(table, remove)
        crash_point("lake.replace_files.before_commit")
        check_commit(table.table_uri)
        table.create_write_transaction(
            [*adds, *removes],
            mode="append",
            schema=table.schema(),
            partition_by=partition_by or None,
            commit_properties=commit_properties,
        )
    finally:
        staging.drop(scratch)


class _LocalStaging:
    """:func:`replace_files`' file operations in a local table's folder."""

    storage_options = None

    def __init__(self, root: Path) -> None:
        self.root = root

    def uri(self, relative: str) -> str:
        return str(self.root / relative)

    def read_text(self, relative: str) -> str:
        return (self.root / relative).read_text("utf-8")

    def move_in(self, source: str, target: str) -> None:
        (self.root / target).parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.root / source, self.root / target)

    def drop(self, scratch: str) -> None:
        shutil.rmtree(self.root / scratch, ignore_errors=True)
        with contextlib.suppress(OSError):
            (self.root / STAGING_DIR).rmdir()  # only when no other writer's scratch is in it

    def drop_stale(self) -> None:
        """Scratch folders left by a crash (older than an hour; a live writer's is younger)."""
        staging_root = self.root / STAGING_DIR
        if not staging_root.is_dir():
            return
        horizon = time.time() - STALE_STAGING_SECONDS
        for child in staging_root.iterdir():
            if child.stat().st_mtime < horizon:
                shutil.rmtree(child, ignore_errors=True)


class _ObjectStaging:
    """:func:`replace_files`' object operations under an object-store table's root,
    through delta-rs's object store with the storage options the table was opened with
    (paths relative to the table's root)."""

    def __init__(self, table: DeltaTable) -> None:
        from deltalake.fs import DeltaStorageHandler

        self.root = table.table_uri.rstrip("/")
        # the options open_delta gave the table (delta-rs keeps them for its own datasets)
        self.storage_options: dict[str, str] | None = getattr(table, "_storage_options", None)
        self.fs = pafs.PyFileSystem(DeltaStorageHandler(self.root, self.storage_options))

    def uri(self, relative: str) -> str:
        return f"{self.root}/{relative}"

    def read_text(self, relative: str) -> str:
        with self.fs.open_input_stream(relative) as stream:
            return stream.read().decode("utf-8")

    def move_in(self, source: str, target: str) -> None:
        self.fs.move(source, target)  # object store: a server-side copy, then a delete

    def drop(self, scratch: str) -> None:
        with contextlib.suppress(OSError):
            self.fs.delete_dir(scratch)

    def drop_stale(self) -> None:
        """Scratch prefixes left by a crash: every object in them older than an hour."""
        newest: dict[str, float] = {}
        selector = pafs.FileSelector(STAGING_DIR, allow_not_found=True, recursive=True)
        for info in self.fs.get_file_info(selector):
            parts = info.path.split("/")
            if info.type != pafs.FileType.File or len(parts) < 3 or info.mtime is None:
                continue
            scratch = "/".join(parts[:2])
            newest[scratch] = max(newest.get(scratch, 0.0), info.mtime.timestamp())
        horizon = time.time() - STALE_STAGING_SECONDS
        for scratch, modified in newest.items():
            if modified < horizon:
                self.drop(scratch)


def _remove_actions(table: DeltaTable, uris: list[str]) -> list[RemoveAction]:
    if not uris:
        return []
    actions = pa.table(table.get_add_actions(flatten=False)).to_pylist()
    local = _is_local_table(table)
    root = str(_local_root(table)) if local else table.table_uri.rstrip("/")
    by_uri = {f"{root}/{unquote(a['path'])}": a for a in actions}
    now = int(time.time() * 1000)
    removes = []
    for uri in uris:
        action = by_uri.get(str(Path(uri).absolute()) if local else uri)
        if action is None:
            raise ValueError(f"{uri} is not a file of {root}'s current snapshot")
        removes.append(
            RemoveAction(
                action["path"],
                True,
                now,
                int(action["size_bytes"]),
                {k: None if v is None else str(v) for k, v in (action.get("partition") or {}).items()},
            )
        )
    return removes


def snapshot_view_sql(table: DeltaTable, files: list[str] | None = None, filename: bool = False) -> str:
    """A SELECT that reads exactly the table's current committed snapshot.

    The file list is frozen into the SQL, so a view made from it can be persisted in a
    DuckDB file (dbt needs that) and keeps showing the same snapshot while a writer
    commits newer versions; DuckDB scans the Parquet files natively, in parallel, with
    projection and filter pushdown. Partition values come from the Hive-style paths.
    ``files``: a subset of the snapshot's files to read (see :func:`files_overlapping`).
    ``filename``: add a ``filename`` column, the file each row comes from (as ``files``
    names it).
    delta-rs writes neither deletion vectors nor column mapping, which this relies on.
    """
    schema = pa.schema(table.schema())
    columns = duckdb_type_sql(schema)
    select_list = ", ".join(f'CAST("{name}" AS {typ}) AS "{name}"' for name, typ in columns)
    files = table.file_uris() if files is None else files
    if not files:
        nulls = ", ".join(f'CAST(NULL AS {typ}) AS "{name}"' for name, typ in columns)
        extra = ", CAST(NULL AS VARCHAR) AS filename" if filename else ""
        return f"SELECT {nulls}{extra} WHERE false"
    file_list = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
    partitioned = bool(table.metadata().partition_columns)
    extra = ", filename" if filename else ""
    return (
        f"SELECT {select_list}{extra} FROM read_parquet([{file_list}], "
        f"hive_partitioning = {str(partitioned).lower()}, hive_types_autocast = false, "
        f"union_by_name = true, filename = {str(filename).lower()})"
    )


def snapshot_connection(lake: Lake) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection that reads ``lake``'s Delta snapshots
    (:func:`snapshot_view_sql`), on an object-store lake too: for the small reads outside a
    stage's session (the manifest, reference tables, positions); ``with`` closes it."""
    return lake.register_filesystem(duckdb.connect())


def register_snapshots(con: duckdb.DuckDBPyConnection, tables: Mapping[str, TableLocation | Path | DeltaTable]) -> None:
    """Create one view per ``schema.table`` over its committed Delta snapshot.

    Tables that were never created are skipped. On a file-backed connection the views
    persist (dbt reads silver through them).
    """
    catalog = _catalog(con)
    for schema_name, table_name, table in _view_targets(con, catalog, tables):
        con.execute(f'CREATE OR REPLACE VIEW "{catalog}"."{schema_name}"."{table_name}" AS {snapshot_view_sql(table)}')


def _catalog(con: duckdb.DuckDBPyConnection) -> str:
    """The connection's own catalog: views are qualified with it, as DuckDB has a built-in
    catalog named "system" (a lake schema's name too)."""
    return con.execute("SELECT current_database()").fetchall()[0][0]


def _view_targets(
    con: duckdb.DuckDBPyConnection, catalog: str, tables: Mapping[str, TableLocation | Path | DeltaTable]
) -> Iterator[tuple[str, str, DeltaTable]]:
    """(schema, table name, Delta table) of each of ``tables`` that exists, its schema
    created in ``catalog`` just before it is yielded: where the register functions put a
    view. Tables never created are skipped."""
    for name, source in tables.items():
        table = source if isinstance(source, DeltaTable) else open_delta(source)
        if table is None:
            continue
        schema_name, table_name = name.split(".", 1)
        con.execute(f'CREATE SCHEMA IF NOT EXISTS "{catalog}"."{schema_name}"')
        yield schema_name, table_name, table


def snapshot_dataset(table: DeltaTable) -> pds.Dataset:
    """The table's current committed snapshot as an Arrow dataset (one fragment per data
    file, partition values and statistics attached), read by Arrow's own local file
    system: DuckDB scans it without any file access of its own (see
    :func:`register_datasets`). Same columns, order and types as :func:`snapshot_view_sql`."""
    if table.table_uri.startswith("s3://"):  # delta-rs reads the objects itself
        return table.to_pyarrow_dataset(schema=_view_typed(table))
    local = pafs.SubTreeFileSystem(str(_local_root(table)), pafs.LocalFileSystem())
    return table.to_pyarrow_dataset(filesystem=local, schema=_view_typed(table))


def _view_typed(table: DeltaTable) -> pa.Schema:
    """The table's Arrow schema with its string and binary columns as view types.

    delta-rs MERGE and OPTIMIZE write Parquet whose embedded Arrow schema says
    ``string_view`` while plain writes say ``string``. Arrow's row-group pruning compares a
    filter bound to the dataset's type with a file's own statistics, and has no kernel for
    ``string`` against ``string_view``: a DuckDB filter on a string column then fails on
    the files of the other kind. DuckDB pushes no filter on a view-typed column down to
    Arrow (it filters those itself), so declaring every string as a view reads both kinds.
    """
    schema = pa.schema(table.schema().to_arrow())
    views = {pa.string(): pa.string_view(), pa.binary(): pa.binary_view()}
    return pa.schema([field.with_type(views.get(field.type, field.type)) for field in schema])


def register_datasets(con: duckdb.DuckDBPyConnection, tables: Mapping[str, TableLocation | Path | DeltaTable]) -> None:
    """Create one view per ``schema.table`` over its committed Delta snapshot, as an Arrow
    dataset: the view needs no file access in DuckDB, so it works on a connection whose
    external access is off (``saleslake.serve.query.reader_connection``). The view keeps its
    dataset alive, and cursors of ``con`` see it. Tables never created are skipped.
    """
    catalog = _catalog(con)
    for schema_name, table_name, table in _view_targets(con, catalog, tables):
        # create_view names its view in the current schema (a dotted name would be literal)
        con.execute(f'USE "{catalog}"."{schema_name}"')
        con.from_arrow(snapshot_dataset(table)).create_view(table_name, replace=True)
    con.execute(f'USE "{catalog}"."main"')
