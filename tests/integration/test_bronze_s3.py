"""Bronze on a real S3-compatible server (S3Proxy, fixture ``s3_settings``): the real data in
../shared/data lands as content-addressed objects in the bucket through
:func:`saleslake.bronze.land_csv` (put-if-absent; large files streamed in parts), silver's
CSV parse reads those objects and yields the rows it yields from a local lake, and
``ingest csv s3://bucket/exports/`` lands a bucket's exports into a local lake."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tracemalloc
import uuid
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from helpers import SHARED_DATA
from saleslake import api
from saleslake.bronze import land_csv, manifest_rows, pending_csv_objects
from saleslake.errors import InputFileError, UserError
from saleslake.lake import Lake, open_delta
from saleslake.silver import process
from saleslake.silver.parse import plan_chunks
from saleslake.storage import s3_filesystem
from saleslake.storage.objects import UPLOAD_PART_BYTES

REGIONAL = SHARED_DATA / "global_superstore_regional"
US = SHARED_DATA / "superstore_us_2023"


@pytest.fixture
def s3_lake(s3_settings, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Lake:
    """A fresh lake under its own prefix of the bucket ``lakehouse``; its local scratch
    in the test's folder."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return Lake(f"s3://lakehouse/{request.node.name[:40]}-{uuid.uuid4().hex[:8]}", s3_settings.storage)


def _bronze_objects(lake: Lake) -> dict[str, bytes]:
    """Every object under the lake's bronze/ prefix: key relative to the home -> bytes."""
    fs = s3_filesystem(lake.storage)
    root = lake.location.join("bronze").removeprefix("s3://")
    home = lake.location.uri.removeprefix("s3://") + "/"
    return {str(k).removeprefix(home): fs.cat_file(k) for k in fs.find(root)}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_real_exports_land_in_the_bucket_once(s3_lake: Lake):
    files = sorted(REGIONAL.glob("*.csv"))
    result = land_csv(s3_lake, [REGIONAL])
    assert not result.errors and len(result.landed) == len(files) == 13

    objects = _bronze_objects(s3_lake)
    rows = manifest_rows(s3_lake)
    # one object per file, under the key the manifest names (relative to the home), with the file's bytes
    assert sorted(objects) == sorted(r["bronze_uri"] for r in rows)
    for row in rows:
        original = REGIONAL / row["original_name"]
        assert row["bronze_uri"] == f"bronze/csv/ingest_date={row['landed_at']:%Y-%m-%d}/{_sha(original)}.csv"
        assert hashlib.sha256(objects[row["bronze_uri"]]).hexdigest() == row["object_id"] == _sha(original)
        assert row["size_bytes"] == original.stat().st_size
    version = open_delta(s3_lake.manifest).version()

    again = land_csv(s3_lake, [REGIONAL])

    assert again.landed == [] and sorted(again.already_landed) == sorted(str(f) for f in files)
    assert _bronze_objects(s3_lake) == objects  # no second object
    assert open_delta(s3_lake.manifest).version() == version  # manifest unchanged


def test_an_object_already_in_the_bucket_is_not_written_again(s3_lake: Lake):
    # a crash after the object's put and before the manifest commit: the next landing
    # finds the object there (the server refuses the conditional put) and lands the file
    source = US / "superstore_us_2023.csv"
    [first] = land_csv(s3_lake, [source]).landed
    key = first["bronze_uri"]
    s3_lake.objects.delete(key)
    assert s3_lake.objects.write_once(key, source.read_bytes())
    assert not s3_lake.objects.write_once(key, b"other bytes")  # put-if-absent
    assert not s3_lake.objects.upload_once(key, source, first["object_id"])
    assert _bronze_objects(s3_lake)[key] == source.read_bytes()


def _big_export(folder: Path, min_bytes: int) -> Path:
    """A real export repeated (its header once) to at least ``min_bytes``."""
    header, _, body = (US / "superstore_us_2023.csv").read_bytes().partition(b"\n")
    target = folder / "big" / "big.csv"
    target.parent.mkdir(parents=True)
    with target.open("wb") as out:
        out.write(header + b"\n")
        written = 0
        while written < min_bytes:
            out.write(body)
            written += len(body)
    return target


def test_a_big_file_is_streamed_to_the_bucket_in_parts(s3_lake: Lake, tmp_path: Path):
    big = _big_export(tmp_path, 100 << 20)
    size = big.stat().st_size

    tracemalloc.start()
    try:
        [row] = land_csv(s3_lake, [big]).landed
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    # a sanity bound above the expected (a few parts of 8 MiB, 1 MiB blocks), far below the file
    assert peak < 5 * UPLOAD_PART_BYTES, f"peak {peak / 2**20:.0f} MiB while landing a {size / 2**20:.0f} MiB file"
    info = s3_filesystem(s3_lake.storage).info(s3_lake.objects.uri(row["bronze_uri"]))
    assert info["size"] == size == row["size_bytes"]
    parts = -(-size // UPLOAD_PART_BYTES)
    assert str(info["ETag"]).strip('"').endswith(f"-{parts}")  # a multipart upload
    digest = hashlib.sha256()
    with s3_lake.objects.open(row["bronze_uri"]) as stored:
        for block in iter(lambda: stored.read(8 << 20), b""):
            digest.update(block)
    assert digest.hexdigest() == row["object_id"] == _sha(big)


def test_a_file_that_changes_while_streamed_leaves_no_object(s3_lake: Lake, tmp_path: Path, monkeypatch):
    import saleslake.bronze as bronze

    monkeypatch.setattr(bronze, "WHOLE_READ_BYTES", 0)  # streamed
    monkeypatch.setattr(bronze, "sha256_of", lambda path: "0" * 64)  # the bytes hashed first differ from those sent
    result = land_csv(s3_lake, [US / "superstore_us_2023.csv"])
    assert result.landed == [] and "changed while it was being landed" in str(result.errors[0])
    assert _bronze_objects(s3_lake) == {} and manifest_rows(s3_lake) == []
    # the aborted multipart upload left no parts behind
    fs = s3_filesystem(s3_lake.storage)
    assert fs.list_multipart_uploads("lakehouse") == []


def _checked(lake: Lake, settings) -> duckdb.DuckDBPyConnection:
    """Silver's typed and checked rows of every landed object (process._checked_table over
    the planned chunks), with the original file's name, in table ``checked_all``."""
    objects = pending_csv_objects(lake, 0)
    names = {o["bronze_uri"]: o["original_name"] for o in objects}
    con = process.connect(settings, lake)
    tables = []
    for chunk in plan_chunks(objects, settings.csv.chunk_bytes):
        tables.append(process._checked_table(con, lake, settings, chunk))
    out = duckdb.connect()
    for i, table in enumerate(tables):
        out.register(f"t{i}", table)
    out.register("names", pa.table({"bronze_uri": list(names), "name": list(names.values())}))
    union = " UNION ALL BY NAME ".join(f"SELECT * FROM t{i}" for i in range(len(tables)))
    out.execute(f"CREATE TABLE checked_all AS SELECT n.name, c.* FROM ({union}) c JOIN names n USING (bronze_uri)")
    con.close()
    return out


def _mixed_cp1252(folder: Path) -> Path:
    """A real export's head in cp1252 with mixed line ends (CR LF, LF, a lone CR): read
    from local copies that silver makes in its scratch folder."""
    lines = (REGIONAL / "emea_orders.csv").read_text("utf-8").splitlines()[:60]
    lines[5] = lines[5].replace("Second Class", "Second Clâss")
    ends = ["\r\n", "\n", "\r"]
    text = "".join(line + ends[i % 3] for i, line in enumerate(lines))
    target = folder / "mixed" / "emea_cp1252.csv"
    target.parent.mkdir(parents=True)
    target.write_bytes(text.encode("cp1252"))
    return target


def test_silver_parses_bronze_objects_in_the_bucket_as_it_does_local_files(s3_lake: Lake, s3_settings, tmp_path):
    from saleslake.sources.csv import CsvOverrides

    local = Lake(tmp_path / "local-lake")
    mixed = _mixed_cp1252(tmp_path)
    results = {}
    for name, lake in (("local", local), ("s3", s3_lake)):
        assert not land_csv(lake, [REGIONAL, US]).errors
        assert land_csv(lake, [mixed], overrides=CsvOverrides(encoding="cp1252")).landed
        con = _checked(lake, s3_settings)
        results[name] = {
            "per_file": con.sql(
                """SELECT name, count(*), count(*) FILTER (WHERE len(reasons) = 0),
                          sum(sales), sum(quantity), sum(profit)
                   FROM checked_all GROUP BY name ORDER BY name"""
            ).fetchall(),
            "keys": con.sql("SELECT line_key, pos FROM checked_all ORDER BY ALL").fetchall(),
            "uris": con.sql("SELECT DISTINCT bronze_uri FROM checked_all ORDER BY 1").fetchall(),
        }
        con.close()

    assert results["s3"] == results["local"]
    per_file = {r[0]: r for r in results["s3"]["per_file"]}
    assert len(per_file) == 15
    assert sum(r[1] for r in per_file.values()) == 61_484 + 59  # the real data's records (test_real_data) + ours
    assert per_file["emea_cp1252.csv"][1] == 59
    # the transcoded / LF copies are local scratch, never objects in the bucket
    assert all(k.endswith(".csv") and "/tmp/" not in k for k in _bronze_objects(s3_lake))
    assert any(p.name.endswith(".lf.csv") for p in (s3_lake.tmp).iterdir())


def _upload_exports(s3_settings, prefix: str) -> str:
    fs = s3_filesystem(s3_settings.storage)
    for f in sorted(REGIONAL.glob("*.csv")):
        fs.put_file(str(f), f"lakehouse/{prefix}/exports/global_superstore_regional/{f.name}")
    fs.pipe_file(f"lakehouse/{prefix}/exports/README.txt", b"not an export")
    return f"s3://lakehouse/{prefix}/exports/"


def test_ingest_csv_lands_a_bucket_prefix_into_a_local_lake(s3_settings, tmp_path):
    uri = _upload_exports(s3_settings, f"ingest-{uuid.uuid4().hex[:8]}")
    local = Lake(s3_settings.home)

    result = api.ingest_csv([uri], settings=s3_settings)

    assert not result.errors and len(result.landed) == 13
    rows = manifest_rows(local)
    assert sorted(r["original_path"] for r in rows) == sorted(
        f"{uri}global_superstore_regional/{f.name}" for f in REGIONAL.glob("*.csv")
    )
    assert {r["source"] for r in rows} == {"global_superstore_regional"}  # the objects' folder
    for row in rows:
        original = REGIONAL / row["original_name"]
        assert row["object_id"] == _sha(original)
        assert (local.home / row["bronze_uri"]).read_bytes() == original.read_bytes()
    assert not (local.tmp / "exports").exists() or not any((local.tmp / "exports").iterdir())  # copies removed

    # one object by its URI; already landed, named by its URI
    one = f"{uri}global_superstore_regional/emea_orders.csv"
    again = api.ingest_csv([one], settings=s3_settings)
    assert again.landed == [] and again.already_landed == [one]


def test_ingest_csv_from_a_bucket_says_what_is_wrong_in_one_line(s3_settings, s3_service, tmp_path, monkeypatch):
    prefix = f"bad-{uuid.uuid4().hex[:8]}"
    fs = s3_filesystem(s3_settings.storage)
    fs.pipe_file(f"lakehouse/{prefix}/notes/README.txt", b"no export here")

    with pytest.raises(InputFileError, match=r"^s3://nobucket-here/exports/: no such bucket 'nobucket-here'"):
        api.ingest_csv(["s3://nobucket-here/exports/"], settings=s3_settings)
    with pytest.raises(InputFileError, match=r"^s3://nobucket-here/day.csv: no such bucket 'nobucket-here'"):
        api.ingest_csv(["s3://nobucket-here/day.csv"], settings=s3_settings)
    with pytest.raises(InputFileError, match=r"^s3://lakehouse/\S+/nothing/: no such object or prefix$"):
        api.ingest_csv([f"s3://lakehouse/{prefix}/nothing/"], settings=s3_settings)
    with pytest.raises(InputFileError, match=r"no CSV object \(\*\.csv\) under it$"):
        api.ingest_csv([f"s3://lakehouse/{prefix}/notes/"], settings=s3_settings)

    wrong = tmp_path / "wrong-secret"
    wrong.write_text("not-the-secret-" + uuid.uuid4().hex)
    os.chmod(wrong, 0o600)
    monkeypatch.setenv("SALESLAKE_S3_SECRET_ACCESS_KEY_FILE", str(wrong))
    with pytest.raises(UserError) as refused:
        api.ingest_csv([f"s3://lakehouse/{prefix}/notes/"], settings=s3_settings)
    message = str(refused.value)
    assert "\n" not in message and "access denied" in message and "credentials" in message
    assert wrong.read_text() not in message and s3_service.secret_key_file.read_text().strip() not in message
    assert manifest_rows(Lake(s3_settings.home)) == []


def test_the_cli_lands_an_object_by_its_uri_and_refuses_a_missing_bucket_in_one_line(s3_settings, s3_service, tmp_path):
    uri = _upload_exports(s3_settings, f"cli-{uuid.uuid4().hex[:8]}")
    one = f"{uri}global_superstore_regional/canada_orders.csv"
    home = tmp_path / "cli-lake"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SALESLAKE_")}
    env |= {
        "SALESLAKE_STORAGE__ENDPOINT_URL": s3_settings.storage.endpoint_url,
        "SALESLAKE_STORAGE__ALLOW_HTTP": "true",
        "SALESLAKE_S3_ACCESS_KEY_ID_FILE": str(s3_service.access_key_file),
        "SALESLAKE_S3_SECRET_ACCESS_KEY_FILE": str(s3_service.secret_key_file),
    }

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "saleslake.cli", *args, "--home", str(home)],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=300,
        )

    landed = cli("ingest", "csv", one)
    assert landed.returncode == 0, landed.stderr
    [row] = manifest_rows(Lake(home))
    assert row["original_path"] == one and row["object_id"] == _sha(REGIONAL / "canada_orders.csv")

    missing = cli("ingest", "csv", "s3://nobucket-here/exports/")
    lines = [text for text in missing.stderr.splitlines() if text.strip()]
    assert missing.returncode == 1 and len(lines) == 1 and "no such bucket 'nobucket-here'" in lines[0], lines


def test_retention_deletes_processed_objects_from_the_bucket_and_keeps_the_rest(s3_lake: Lake, s3_settings):
    from datetime import UTC, datetime, timedelta

    from deltalake import CommitProperties, Transaction

    from saleslake.contract import QUARANTINE_SCHEMA, SALES_LINES_SCHEMA
    from saleslake.lake import ensure_delta, write_delta
    from saleslake.retention import apply_retention

    first = land_csv(s3_lake, [REGIONAL / "canada_orders.csv", REGIONAL / "emea_orders.csv"]).landed
    [late] = land_csv(s3_lake, [US]).landed  # landed after silver's position: kept
    processed = max(r["landed_seq"] for r in first)
    for table, schema in ((s3_lake.sales_lines, SALES_LINES_SCHEMA), (s3_lake.quarantine, QUARANTINE_SCHEMA)):
        ensure_delta(table, schema)
        commit = CommitProperties(app_transactions=[Transaction(process.APP_ID, processed)])
        write_delta(table, schema.empty_table(), mode="append", commit_properties=commit)

    result = apply_retention(s3_lake, s3_settings, now=datetime.now(UTC) + timedelta(days=365))

    assert result.files_deleted == 2 and result.bytes_freed == sum(r["size_bytes"] for r in first)
    assert sorted(_bronze_objects(s3_lake)) == [late["bronze_uri"]]
    assert len(manifest_rows(s3_lake)) == 3  # the rows stay: landing the files again is a no-op
    assert land_csv(s3_lake, [REGIONAL / "canada_orders.csv"]).landed == []
