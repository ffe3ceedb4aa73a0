"""Bronze retention: raw data older than ``bronze.retention_days`` (90 by default) is
deleted, but never what silver has not processed yet (ARCHITECTURE, bronze).

- CSV objects: the file under ``bronze/csv/`` goes; its manifest row stays, so landing
  the same file again is still a no-op and lineage still names it.
- Kafka records (``bronze.pos_events``): rows of ingest dates before the cutoff are
  deleted from the Delta table where both silver tables hold their partition's offset;
  the Parquet files themselves go at the next vacuum past Delta's own retention
  (7 days), so readers of older snapshots are never cut off.

Runs at the end of every ``run`` (see :func:`saleslake.api.run`)::

    from saleslake.retention import apply_retention
    apply_retention(lake, settings)   # RetentionResult(files_deleted=.., bytes_freed=.., events_deleted=..)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from saleslake.bronze import manifest_rows
from saleslake.config import Settings
from saleslake.lake import Lake, open_delta, txn_version
from saleslake.storage.lease import check_commit


@dataclass
class RetentionResult:
    files_deleted: int = 0
    bytes_freed: int = 0
    events_deleted: int = 0
    cutoff: str = ""


def _processed_seq(lake: Lake) -> int:
    from saleslake.silver.process import APP_ID

    return min(txn_version(lake.sales_lines, APP_ID), txn_version(lake.quarantine, APP_ID))


def _purge_csv(lake: Lake, cutoff: datetime, result: RetentionResult) -> None:
    processed = _processed_seq(lake)
    when = cutoff.astimezone(UTC).isoformat()
    # a reparse landed the same day names the same object: it stays until that is processed
    waiting = {obj["bronze_uri"] for obj in manifest_rows(lake, f"kind = 'csv' AND landed_seq > {processed}")}
    for obj in manifest_rows(lake, f"kind = 'csv' AND landed_seq <= {processed} AND landed_at < TIMESTAMPTZ '{when}'"):
        path = lake.home / obj["bronze_uri"]
        if path.exists() and obj["bronze_uri"] not in waiting:
            result.bytes_freed += path.stat().st_size
            path.unlink()
            result.files_deleted += 1


def _purge_events(lake: Lake, cutoff: datetime, result: RetentionResult) -> None:
    from saleslake.sources.kafka import app_id

    table = open_delta(lake.bronze_events)
    if table is None:
        return
    day = cutoff.strftime("%Y-%m-%d")
    topics_partitions = (
        table.to_pyarrow_dataset()
        .to_table(columns=["topic", "partition"], filter=None)
        .group_by(["topic", "partition"])
        .aggregate([])
        .to_pylist()
    )
    covered = []
    for tp in topics_partitions:
        held = min(
            txn_version(lake.sales_lines, app_id(tp["topic"], tp["partition"])),
            txn_version(lake.quarantine, app_id(tp["topic"], tp["partition"])),
        )
        if held >= 0:
            topic = tp["topic"].replace("'", "''")
            covered.append(f"(topic = '{topic}' AND partition = {tp['partition']} AND offset <= {held})")
    if not covered:
        return
    check_commit(table.table_uri)
    metrics = table.delete(f"ingest_date < '{day}' AND ({' OR '.join(covered)})")
    result.events_deleted += int(metrics.get("num_deleted_rows", 0) or 0)


def apply_retention(lake: Lake, settings: Settings, now: datetime | None = None) -> RetentionResult:
    days = settings.bronze.retention_days
    if days is None:
        return RetentionResult()
    cutoff = (now or datetime.now(UTC)) - timedelta(days=days)
    result = RetentionResult(cutoff=cutoff.isoformat(timespec="seconds"))
    _purge_csv(lake, cutoff, result)
    _purge_events(lake, cutoff, result)
    return result
