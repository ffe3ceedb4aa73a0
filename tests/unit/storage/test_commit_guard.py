"""Every commit path a lease guards (storage.lease.guarding / check_commit) refuses to
commit once the lease it holds can no longer be counted on, and commits nothing."""

from __future__ import annotations

import ast
from pathlib import Path
from types import SimpleNamespace

import duckdb
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from saleslake.contract import QUARANTINE_SCHEMA
from saleslake.lake import TableLocation, read_delta, write_delta
from saleslake.pipeline.stream import StreamWorker
from saleslake.silver.dedup import write_upserts
from saleslake.storage.lease import Lease, LeaseLostError, guarding
from saleslake.storage.objects import LocalObjects


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def lost(tmp_path: Path):
    """A table under ``tmp_path/lake``, and a lease on that lake that expired while held."""
    clock = Clock()
    lease = Lease(LocalObjects(tmp_path / "objects"), ttl=60, clock=clock, monotonic=clock)
    lease.acquire("run")
    where = TableLocation.of(tmp_path / "lake" / "silver" / "t")
    write_delta(where, pa.table({"a": [1]}))
    clock.now += 60
    return lease, where


def _guarded(lease: Lease, table: DeltaTable):
    return guarding(table.table_uri.rstrip("/").rsplit("/", 2)[0], lease)


def test_write_delta_refuses_after_the_lease_was_lost(lost):
    lease, where = lost
    with guarding(str(where.local.parent.parent), lease), pytest.raises(LeaseLostError):  # type: ignore[union-attr]
        write_delta(where, pa.table({"a": [2]}), mode="append")
    with _guarded(lease, read_delta(where)), pytest.raises(LeaseLostError):
        write_delta(read_delta(where), pa.table({"a": [2]}), mode="append")
    assert read_delta(where).version() == 0


def test_silver_upserts_refuse_after_the_lease_was_lost(lost):
    lease, where = lost
    table = read_delta(where)
    with _guarded(lease, table), pytest.raises(LeaseLostError):
        write_upserts(duckdb.connect(), table, [])
    assert read_delta(where).version() == 0


def test_the_streams_own_commits_refuse_after_the_lease_was_lost(lost):
    lease, where = lost
    table = read_delta(where)
    worker = SimpleNamespace(topic="pos", positions=SimpleNamespace(tables={"bronze": table, "quarantine": table}))
    worker.con = duckdb.connect()
    # no quarantine rows: the commit would still carry the batch's positions
    worker.con.register("no_rows", QUARANTINE_SCHEMA.empty_table().append_column("partition", pa.array([], pa.int32())))
    worker.con.execute("CREATE TABLE quarantine_rows AS SELECT * FROM no_rows")
    worker.con.execute("CREATE TABLE applied AS SELECT 0 AS partition, -1 AS quarantine_pos")
    with _guarded(lease, table), pytest.raises(LeaseLostError):
        StreamWorker._write_bronze(worker, pa.table({"partition": [0], "offset": [1]}), {0: 1}, {})  # type: ignore[arg-type]
    with _guarded(lease, table), pytest.raises(LeaseLostError):
        StreamWorker._commit_quarantine(worker, {0: 1}, {0: -1})  # type: ignore[arg-type]
    assert read_delta(where).version() == 0


#: Calls that commit to a Delta table (delta-rs's writer and table methods).
COMMITS = {"write_deltalake", "merge", "delete", "compact", "create_write_transaction", "update", "restore", "vacuum"}


def test_every_commit_in_the_package_checks_the_lease_first():
    """A static guard: each Delta commit in src/saleslake sits in a function that calls
    check_commit before it (or goes through lake.write_delta, which does), so a commit
    path added later cannot forget the lease."""
    import saleslake

    unguarded = []
    for path in sorted(Path(saleslake.__file__).parent.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for fn in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
            checks = [c.lineno for c in ast.walk(fn) if isinstance(c, ast.Call) and _name(c) == "check_commit"]
            for call in (c for c in ast.walk(fn) if isinstance(c, ast.Call) and _name(c) in COMMITS):
                if _name(call) != "write_deltalake" and not _on_a_table(call):
                    continue
                if call.args and "scratch" in ast.unparse(call.args[0]):
                    continue  # replace_files' own scratch table, not the lake's
                if not any(line <= call.lineno for line in checks):
                    unguarded.append(f"{path.name}:{call.lineno} {_name(call)}")
    assert not unguarded, f"Delta commits without check_commit before them: {unguarded}"


def _name(call: ast.Call) -> str:
    f = call.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""


def _on_a_table(call: ast.Call) -> bool:
    """``table.merge(...)``, ``self.table.optimize.compact(...)``: a method of a value
    whose name says it is a Delta table (not dict.update, str.replace, ...)."""
    f = call.func
    if not isinstance(f, ast.Attribute):
        return False
    text = ast.unparse(f.value)
    return any(word in text for word in ("table", "target", "optimize"))
