"""Typed settings: defaults < saleslake.toml < environment (SALESLAKE_..., sections joined
with ``__``). Secrets are never fields with defaults; they come from the environment or
``..._FILE`` files only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from saleslake.errors import ConfigError
from saleslake.location import check_object_store_uri, is_object_store_uri


class QualitySettings(BaseModel):
    """Quality gate and plausibility bounds (CONTRACT §4). Every source quarantines a
    date outside [min_date, max_date] as ``invalid_date:<field>`` and a quantity above
    ``max_quantity`` as ``quantity_out_of_range`` (see :mod:`saleslake.silver.bounds`)."""

    max_quarantine_share: float = Field(0.20, ge=0.0, le=1.0)
    outlier_threshold: Decimal = Decimal("10000")
    min_date: date = date(1900, 1, 1)
    # before 9999-12-31, the open end of SCD2 validity: a version starting there is empty
    max_date: date = Field(date(2100, 12, 31), lt=date(9999, 12, 31), validate_default=True)
    # a day's quantities of one region and category are summed in a BIGINT in gold
    max_quantity: int = Field(1_000_000_000, ge=1, le=1_000_000_000_000)

    @field_validator("max_date")
    @classmethod
    def _after_min_date(cls, v: date, info: ValidationInfo) -> date:
        low = info.data.get("min_date")
        if low is not None and v < low:
            raise ValueError(f"must not be before min_date ({low})")
        return v


class TaxSettings(BaseModel):
    """Tax rates as fractions (0.085 = 8.5 %).

    ``rates`` keys are a country (``"Germany"``) or a country and state
    (``"United States/California"``); the most specific key wins, then ``flat_rate``.
    """

    flat_rate: Decimal = Decimal("0")
    rates: dict[str, Decimal] = Field(default_factory=dict)

    @field_validator("flat_rate")
    @classmethod
    def _rate_is_fraction(cls, v: Decimal) -> Decimal:
        if not Decimal(0) <= v <= Decimal(1):
            raise ValueError("a tax rate is a fraction between 0 and 1")
        return v


class FraudSettings(BaseModel):
    """Fraud rules (CONTRACT §7); each flags a line with its reason code."""

    # amount_above_threshold: gross line amount strictly above this
    amount_threshold: Decimal = Decimal("1000")
    # high_discount_high_amount: discount at or above high_discount on a line above the amount
    high_discount: Decimal = Decimal("0.5")
    high_discount_amount: Decimal = Decimal("500")
    # The two rules below judge lines with an event time (point of sale, operational
    # database) against the lines before them; gold decides them from the whole of silver
    # (CONTRACT §7), so a flag never depends on batching, arrival order or restarts.
    # velocity: more than this many transactions by one card (or customer, when no card)
    # within the window ending at a transaction, per source
    velocity_max_transactions: int = Field(5, ge=1)
    velocity_window_seconds: int = Field(600, ge=1)
    # quantity_above_norm: quantity above this multiple of the product's mean quantity
    # over its earlier lines with an event time, from the start of the UTC day
    # quantity_norm_days days before the sale up to the sale (exclusive), once those are
    # at least quantity_norm_min_lines lines
    quantity_norm_multiple: Decimal = Field(Decimal("10"), gt=0)
    quantity_norm_min_lines: int = Field(20, ge=1)
    quantity_norm_days: int = Field(90, ge=0, le=3660)


class BronzeSettings(BaseModel):
    # raw data older than this is deleted once silver has processed it (None: keep forever)
    retention_days: float | None = Field(90, ge=0)


class CsvSettings(BaseModel):
    default_currency: str = "USD"
    # Files are parsed in chunks of about this many bytes so memory stays bounded.
    chunk_bytes: int = Field(128 * 1024 * 1024, gt=0)
    # A record (CSV line, or lines joined by a quoted field) longer than this many bytes
    # is quarantined as malformed_row:oversized_record, its raw line cut to 10,000
    # characters and its length kept in raw['raw_line_bytes']. DuckDB's maximum line size;
    # its read buffers are 16 times as large from 2 MB up.
    max_record_bytes: int = Field(2_000_000, ge=1024)


class KafkaSettings(BaseModel):
    """Where the point-of-sale stream lives. ``client`` passes any librdkafka setting
    through (e.g. ``security.protocol``); a password goes in
    ``SALESLAKE_KAFKA_PASSWORD`` (or ``..._FILE``), never here."""

    bootstrap_servers: str = "127.0.0.1:9092"
    topic: str = "pos.sales"
    group_id: str = "saleslake"
    # partitions of the topic when saleslake creates it (produce)
    partitions: int = Field(4, ge=1)
    client: dict[str, str] = Field(default_factory=dict)


class PostgresSettings(BaseModel):
    """The operational database (source ``shop``) and the PostgreSQL warehouse (gold target).

    Three roles, each with its own password, never a setting: it comes from the
    environment variable or from the file named by the same variable plus ``_FILE``
    (``saleslake services start postgres`` prints the files of the local service):

    ========== ======================= ============================================
    role       default name            password variable
    ========== ======================= ============================================
    owner      ``saleslake``           ``SALESLAKE_POSTGRES_PASSWORD[_FILE]``
    reader     ``saleslake_reader``    ``SALESLAKE_POSTGRES_READER_PASSWORD[_FILE]``
    warehouse  ``saleslake_warehouse`` ``SALESLAKE_POSTGRES_WAREHOUSE_PASSWORD[_FILE]``
    ========== ======================= ============================================

    The owner creates and changes the shop schema (``generate oltp``), the read-only reader
    extracts it (``ingest postgres``), the warehouse role publishes gold. ``dsn`` (shop)
    and ``warehouse_dsn`` replace host, port, database and user when set; they must not
    hold a password.
    """

    host: str = "127.0.0.1"
    port: int = Field(5432, ge=1, le=65535)
    database: str = "shop"
    warehouse_database: str = "warehouse"
    user: str = "saleslake"
    reader_user: str = "saleslake_reader"
    warehouse_user: str = "saleslake_warehouse"
    dsn: str | None = None
    warehouse_dsn: str | None = None
    sslmode: str | None = None  # libpq sslmode (disable, prefer, require, verify-full, ...)
    connect_timeout_seconds: int = Field(10, ge=1)
    statement_timeout_seconds: float = Field(300.0, ge=0)  # 0 = no limit
    lock_timeout_seconds: float = Field(5.0, ge=0)  # 0 = no limit
    application_name: str = "saleslake"
    # the gold warehouse (saleslake publish postgres)
    warehouse_schema: str = "gold"  # target schema of the star schema
    publish_after_gold: bool = False  # publish to the warehouse at the end of every gold build
    publish_attempts: int = Field(4, ge=1)  # tries on transient errors (connection lost, lock timeout)
    # the local service (saleslake services start postgres)
    service_home: Path | None = None  # default <home>/services/postgres
    bin_dir: Path | None = None  # initdb/pg_ctl/postgres; default: detected (or installed)

    @field_validator("dsn", "warehouse_dsn")
    @classmethod
    def _no_password_in_dsn(cls, v: str | None) -> str | None:
        return dsn_without_password(v)

    def password_env(self, role: str = "owner") -> str:
        """The variable holding ``role``'s password (``owner``, ``reader``, ``warehouse``)."""
        names = {
            "owner": "SALESLAKE_POSTGRES_PASSWORD",
            "reader": "SALESLAKE_POSTGRES_READER_PASSWORD",
            "warehouse": "SALESLAKE_POSTGRES_WAREHOUSE_PASSWORD",
        }
        if role not in names:
            raise ValueError(f"unknown PostgreSQL role kind {role!r}: owner, reader or warehouse")
        return names[role]

    def password(self, role: str = "owner") -> str | None:
        """``role``'s password from the environment or its ``_FILE``, or None."""
        return read_secret(self.password_env(role))

    def dsn_for(self, role: str = "owner") -> str:
        """The connection string (without password) ``role`` uses: owner and reader → shop,
        warehouse → warehouse."""
        self.password_env(role)  # validates role
        if role == "warehouse" and self.warehouse_dsn:
            return self.warehouse_dsn
        if role != "warehouse" and self.dsn:
            return self.dsn
        user = {"owner": self.user, "reader": self.reader_user, "warehouse": self.warehouse_user}[role]
        database = self.warehouse_database if role == "warehouse" else self.database
        from psycopg.conninfo import make_conninfo

        extra = {"sslmode": self.sslmode} if self.sslmode else {}
        return make_conninfo(host=self.host, port=self.port, dbname=database, user=user, **extra)


def dsn_without_password(dsn: str | None, password_env: str = "SALESLAKE_POSTGRES_..._PASSWORD") -> str | None:
    """``dsn`` when it is a PostgreSQL connection string (libpq URL or key=value) without a
    password, None when empty; ValueError otherwise. A password in a DSN ends up in
    settings files, shell history and, given on the command line, in ``ps``: it belongs in
    the file named by ``<password_env>_FILE``. The settings (``postgres.dsn``,
    ``postgres.warehouse_dsn``) and every ``--dsn`` option are checked by this."""
    if dsn is None or not dsn.strip():
        return None
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(dsn)
    except Exception:
        raise ValueError("not a valid PostgreSQL connection string (libpq URL or key=value)") from None
    if params.get("password"):
        raise ValueError(f"must not contain a password: set {password_env}_FILE instead")
    return dsn


#: The variables holding the S3 credentials (or, with ``_FILE``, naming the files that do).
S3_ACCESS_KEY_ENV = "SALESLAKE_S3_ACCESS_KEY_ID"
S3_SECRET_KEY_ENV = "SALESLAKE_S3_SECRET_ACCESS_KEY"


@dataclass(frozen=True)
class S3Credentials:
    """An access key pair; the secret never shows in a repr, a log or a traceback's locals."""

    access_key_id: str
    secret_access_key: str = field(repr=False)


class StorageSettings(BaseModel):
    """Object storage for a lake in a bucket: AWS S3 or an S3-compatible server (the local
    one of ``saleslake services start s3`` prints the variables to set).

    Credentials are never settings: ``SALESLAKE_S3_ACCESS_KEY_ID`` and
    ``SALESLAKE_S3_SECRET_ACCESS_KEY`` (or the files named by their ``_FILE`` variants),
    both or neither; neither means the standard AWS chain (``AWS_*`` variables, profile,
    instance role). :mod:`saleslake.storage` turns these settings into delta-rs storage
    options and an s3fs filesystem.
    """

    endpoint_url: str | None = None  # None: AWS S3 of ``region``
    region: str = "us-east-1"
    # a plain http:// endpoint (a local server); https otherwise
    allow_http: bool = Field(False, validate_default=True)
    # path-style addressing (``endpoint/bucket/key``); None: on with endpoint_url, off on AWS
    path_style: bool | None = None
    # the local folder of an object-store lake's scratch, warehouse file and dbt output
    # (a rebuildable cache: DuckDB and dbt need local files); None: the user's cache,
    # see saleslake.lake.Lake.work. Not used by a local lake (its home is its work dir).
    work_dir: Path | None = None
    # the run lease of a lake in a bucket (runs.lake_lock): renewed every third of it while
    # held; a holder that died blocks the lake this long
    lease_ttl_seconds: float = Field(60.0, gt=0)
    # the silver commit lease (runs.silver_commit_lock): held around one batch's commits, so
    # short: a stream waits at most this long for a dead writer's
    silver_lease_ttl_seconds: float = Field(20.0, gt=0)

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint_is_a_url(cls, v: str | None) -> str | None:
        if v is None or not v.strip():
            return None
        v = v.strip().rstrip("/")
        parts = urlsplit(v)
        # the value is never echoed: a URL given here may hold a key or a signed query
        if "@" in parts.netloc:
            raise ValueError(f"must not hold credentials: set {S3_ACCESS_KEY_ENV}_FILE and {S3_SECRET_KEY_ENV}_FILE")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("is not an http:// or https:// URL, e.g. http://127.0.0.1:9000")
        if parts.path or parts.query or parts.fragment:
            raise ValueError(f"must be the server's address only ({parts.scheme}://{parts.netloc}), no path or query")
        return v

    @field_validator("allow_http")
    @classmethod
    def _http_only_when_allowed(cls, v: bool, info: ValidationInfo) -> bool:
        endpoint = info.data.get("endpoint_url")
        if endpoint and endpoint.startswith("http://") and not v:
            raise ValueError(f"must be true for the plain http:// endpoint_url {endpoint} (or use https://)")
        return v

    def uses_path_style(self) -> bool:
        """Path-style addressing: as set, else on for a custom endpoint (S3-compatible
        servers rarely have a DNS name per bucket), off on AWS."""
        return self.path_style if self.path_style is not None else self.endpoint_url is not None

    def credentials(self) -> S3Credentials | None:
        """The key pair from the environment or its ``_FILE`` files, or None to let the
        standard AWS chain find one. Half a pair or an empty file is a ConfigError."""
        key_id, secret = _nonempty_secret(S3_ACCESS_KEY_ENV), _nonempty_secret(S3_SECRET_KEY_ENV)
        if key_id is None and secret is None:
            return None
        if key_id is None or secret is None:
            have, missing = (
                (S3_ACCESS_KEY_ENV, S3_SECRET_KEY_ENV) if secret is None else (S3_SECRET_KEY_ENV, S3_ACCESS_KEY_ENV)
            )
            raise ConfigError(
                f"{have} is set but {missing} is not: set {missing} (or {missing}_FILE) too, "
                f"or neither to use the standard AWS credentials"
            )
        return S3Credentials(key_id, secret)


def _nonempty_secret(name: str) -> str | None:
    value = read_secret(name)
    if value == "":  # only a file gives an empty value: an empty variable counts as unset
        raise ConfigError(f"{name}_FILE names {os.environ[name + '_FILE']}, which is empty: write the value there")
    return value


class OltpTableSettings(BaseModel):
    """Where one logical table of the operational shop lives: its source relation, key,
    change-tracking column and column names (logical name -> source column; unnamed
    logical columns have the same name in the source)."""

    source: str
    key: str
    updated_at: str = "updated_at"
    columns: dict[str, str] = Field(default_factory=dict)


def _default_oltp_tables() -> dict[str, OltpTableSettings]:
    keys = {
        "stores": "store_id",
        "customers": "customer_id",
        "products": "product_id",
        "orders": "order_id",
        "order_lines": "order_line_id",
    }
    return {name: OltpTableSettings(source=name, key=key) for name, key in keys.items()}


class OltpSettings(BaseModel):
    """Incremental extract of the operational database (``saleslake ingest postgres``).

    Per table, rows with ``updated_at >= watermark - overlap_seconds`` are re-read and
    deduplicated against the (key, updated_at) pairs already taken, so a late commit with
    an older ``updated_at`` within the window is not lost and rows sharing one
    ``updated_at`` are never skipped. ``tables`` maps the logical shop tables (the demo
    schema of ``saleslake generate oltp`` by default) to the source."""

    source_name: str = "shop"
    db_schema: str = "public"
    overlap_seconds: float = Field(5.0, ge=0)
    batch_bytes: int = Field(16 * 1024 * 1024, ge=65536)  # Arrow batch size when parsing the COPY stream
    retries: int = Field(5, ge=0)  # tries after a lost connection (server restart), with backoff
    retry_backoff_seconds: float = Field(0.5, ge=0)
    tables: dict[str, OltpTableSettings] = Field(default_factory=_default_oltp_tables)


class QuerySettings(BaseModel):
    """``saleslake query``: read-only SQL over the lake (saleslake.serve.query)."""

    # folders whose files SQL may read (read_csv, read_parquet, ...); none by default.
    # DuckDB cannot grant reading without writing, so a folder may not hold the lake.
    allow_files: list[Path] = Field(default_factory=list)


class StreamSettings(BaseModel):
    # a micro-batch ends at max_batch messages or after max_wait_seconds, whichever first
    max_batch: int = Field(50_000, ge=1)
    max_wait_seconds: float = Field(1.0, gt=0)
    # messages above this size are quarantined as oversized, not parsed
    max_message_bytes: int = Field(262_144, gt=0)
    # tries (with backoff, about 5 s each) to reach the broker at start before giving up
    connect_attempts: int = Field(6, ge=1)
    # --until-idle: stop with an error naming the partitions still behind (and the group
    # member holding them) after this long without progress; keep it well above the
    # group's session.timeout.ms, the time a killed member keeps its partitions
    idle_wait_seconds: float = Field(120.0, gt=0)
    # refresh gold this often while streaming (None: never; `run` publishes it)
    refresh_gold_every_seconds: float | None = Field(None, gt=0)
    # ISO 4217 codes accepted in events; another code quarantines the event
    # (schema_violation:currency)
    currencies: list[str] = Field(
        default_factory=lambda: [
            "USD",
            "EUR",
            "GBP",
            "CAD",
            "AUD",
            "BRL",
            "MXN",
            "INR",
            "CNY",
            "JPY",
            "ZAR",
            "NGN",
            "EGP",
            "TRY",
            "SGD",
            "CHF",
            "SEK",
            "PLN",
        ]
    )


class AlertSettings(BaseModel):
    """Where alerts go (failed tasks, stale sources, quarantine rate, stream lag). They are
    always logged; a webhook and e-mail are added when configured. A webhook URL that holds
    a token belongs in ``SALESLAKE_ALERTS__WEBHOOK_URL`` (or ``SALESLAKE_ALERT_WEBHOOK_URL_FILE``),
    the SMTP password in ``SALESLAKE_SMTP_PASSWORD[_FILE]``; neither is ever logged."""

    webhook_url: str | None = None  # JSON POST {"title", "severity", "text", "details"}
    webhook_timeout_seconds: float = Field(10.0, gt=0)
    smtp_host: str | None = None
    smtp_port: int = Field(587, ge=1, le=65535)
    smtp_user: str | None = None
    smtp_starttls: bool = True
    mail_from: str = "saleslake@localhost"
    mail_to: list[str] = Field(default_factory=list)

    def webhook(self) -> str | None:
        return self.webhook_url or read_secret("SALESLAKE_ALERT_WEBHOOK_URL")


class MonitorSettings(BaseModel):
    """Thresholds of ``saleslake_monitor`` / :func:`saleslake.api.health`."""

    # a source whose newest line reached silver longer ago than this is stale; keys are a
    # source system (``pos``, ``oltp``, ``csv:<name>``) or its kind (``csv``)
    max_source_age_seconds: dict[str, float] = Field(
        default_factory=lambda: {"csv": 26 * 3600.0, "oltp": 2 * 3600.0, "pos": 15 * 60.0}
    )
    # share of rows quarantined by silver within the window above which to alert
    max_quarantine_share: float = Field(0.05, ge=0.0, le=1.0)
    quarantine_window_hours: float = Field(24.0, gt=0)
    # Kafka messages not yet in silver (all partitions) above which to alert
    max_stream_lag: int = Field(100_000, ge=0)


class OrchestrationSettings(BaseModel):
    """How the Airflow DAGs (airflow/dags) drive the pipeline."""

    # folder of regional CSV exports the daily batch lands (landing is idempotent: a file
    # already in bronze is a no-op); None: the batch lands nothing
    csv_inbox: Path | None = None
    # source name for CSV files lying directly in the inbox; each subfolder of the inbox is
    # a source of its own, named after the folder
    csv_source: str = "exports"
    # extract the operational PostgreSQL database in the daily batch
    extract_postgres: bool = False
    batch_schedule: str = "@daily"
    retries: int = Field(2, ge=0)
    retry_delay_minutes: float = Field(10.0, ge=0)
    # bounded stream micro-batches every interval, each at most max_seconds long
    stream_interval_seconds: int = Field(30, ge=5)
    stream_max_seconds: float = Field(25.0, gt=0)
    monitor_interval_minutes: int = Field(15, ge=1)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SALESLAKE_",
        env_nested_delimiter="__",
        extra="forbid",
    )

    # a folder, or s3://bucket/prefix for a lake in a bucket (see saleslake.location)
    home: Path | str = Path("lakehouse")
    quality: QualitySettings = Field(default_factory=QualitySettings)
    tax: TaxSettings = Field(default_factory=TaxSettings)
    fraud: FraudSettings = Field(default_factory=FraudSettings)
    csv: CsvSettings = Field(default_factory=CsvSettings)
    bronze: BronzeSettings = Field(default_factory=BronzeSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    stream: StreamSettings = Field(default_factory=StreamSettings)
    query: QuerySettings = Field(default_factory=QuerySettings)
    postgres: PostgresSettings = Field(default_factory=PostgresSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    oltp: OltpSettings = Field(default_factory=OltpSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    monitor: MonitorSettings = Field(default_factory=MonitorSettings)
    orchestration: OrchestrationSettings = Field(default_factory=OrchestrationSettings)
    # Peak RSS stays under ~4 GB at any input size with these two bounds (benchmarks/).
    duckdb_memory_limit: str = "2GB"
    duckdb_threads: int = Field(0, ge=0)  # 0 = all cores

    @field_validator("home", mode="plain")
    @classmethod
    def _home_is_a_folder_or_bucket(cls, v: Any) -> Path | str:
        """A local folder stays a Path; ``s3://…`` is checked and kept as text (a Path
        would fold its ``//``)."""
        if isinstance(v, str) and is_object_store_uri(v):
            return check_object_store_uri(v)
        if isinstance(v, str | Path) and str(v).strip():
            return Path(v)
        raise ValueError(f"{v!r} is not a folder or an s3://bucket/prefix URI")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=config_file_path())
        return (init_settings, env_settings, toml)


def config_file_path() -> Path | None:
    """``$SALESLAKE_CONFIG`` if set, else ``./saleslake.toml`` when it exists."""
    explicit = os.environ.get("SALESLAKE_CONFIG")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"SALESLAKE_CONFIG names {path}, which is not a file")
        return path
    local = Path("saleslake.toml")
    return local if local.is_file() else None


def load_settings(**overrides: Any) -> Settings:
    """Resolve settings; a bad value becomes one ConfigError line naming the field."""
    clean = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**clean)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "settings"
        raise ConfigError(
            f"invalid setting {where}: {first['msg']} (env SALESLAKE_{where.upper().replace('.', '__')})"
        ) from None
    except ValueError as exc:  # e.g. TOML syntax errors
        raise ConfigError(f"cannot read configuration: {exc}") from None


def read_secret(name: str) -> str | None:
    """A secret from ``$NAME`` or from the file named by ``$NAME_FILE``; never logged."""
    value = os.environ.get(name)
    if value:
        return value
    file_name = os.environ.get(f"{name}_FILE")
    if file_name:
        try:
            return Path(file_name).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{name}_FILE names {file_name}, which cannot be read: {exc.strerror}") from None
    return None
