"""PostgreSQL connections for every PostgreSQL-facing stage (OLTP generator, extract, publish).

The password never travels in a DSN that saleslake prints, logs or raises: it is read from
the environment (``SALESLAKE_POSTGRES_..._PASSWORD`` or its ``_FILE``, see
:class:`saleslake.config.PostgresSettings`) and handed to libpq separately; every message
shows the DSN through :func:`redact` and has the password scrubbed out::

    from saleslake.connections.postgres import connect
    with connect(settings.postgres, "reader", read_only=True) as conn:
        conn.execute("SELECT count(*) FROM orders").fetchone()
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from saleslake.config import PostgresSettings
from saleslake.errors import TransientError, UserError

if TYPE_CHECKING:  # pragma: no cover
    import psycopg


class PostgresConnectError(TransientError):
    """The server cannot be reached (down, restarting, wrong host or port)."""


class PostgresAuthError(UserError):
    """The server refused the login (wrong or missing password, unknown role or database)."""


def redact(dsn: str) -> str:
    """``dsn`` as a ``postgresql://user@host:port/db?...`` URL without any password."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = {k: str(v) for k, v in conninfo_to_dict(dsn).items() if v is not None}
    except Exception:
        return "<unparsable DSN>"
    params.pop("password", None)
    user = params.pop("user", "")
    host = params.pop("host", "")
    port = params.pop("port", "")
    dbname = params.pop("dbname", "")
    netloc = (quote(user, safe="") + "@" if user else "") + (host if "/" not in host else "")
    if host and "/" in host:  # unix socket directory
        params["host"] = host
    if port:
        netloc += f":{port}"
    query = "&".join(f"{k}={quote(v, safe='/')}" for k, v in sorted(params.items()))
    return f"postgresql://{netloc}/{quote(dbname, safe='')}" + (f"?{query}" if query else "")


def scrub(message: str, *secrets: str | None) -> str:
    """``message`` on one line with every given secret replaced by ``***``."""
    text = " ".join(str(message).split())
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def connect(
    pg: PostgresSettings,
    role: str = "owner",
    dsn: str | None = None,
    *,
    autocommit: bool = False,
    read_only: bool = False,
    statement_timeout: float | None = None,
    lock_timeout: float | None = None,
    application_name: str | None = None,
    **kwargs: Any,
) -> psycopg.Connection:
    """Open a connection as ``role`` (``owner``, ``reader``, ``warehouse``) to ``dsn``
    (default: ``pg.dsn_for(role)``), the password from ``role``'s variable unless the DSN
    has one (a DSN whose user is another configured role uses that role's variable). Timeouts in seconds (default: the settings'; 0 = none). Raises
    :class:`PostgresAuthError` or :class:`PostgresConnectError` with the redacted DSN."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    target = dsn or pg.dsn_for(role)
    try:
        given = conninfo_to_dict(target)
    except psycopg.Error:
        raise UserError("the PostgreSQL DSN is not a valid libpq URL or key=value string") from None
    # a DSN naming another configured role takes that role's password variable
    by_user = {pg.user: "owner", pg.reader_user: "reader", pg.warehouse_user: "warehouse"}
    role = by_user.get(str(given.get("user") or ""), role)
    password = str(given.get("password") or "") or pg.password(role)
    env = pg.password_env(role)
    statement = pg.statement_timeout_seconds if statement_timeout is None else statement_timeout
    lock = pg.lock_timeout_seconds if lock_timeout is None else lock_timeout
    options = [f"-c statement_timeout={int(statement * 1000)}", f"-c lock_timeout={int(lock * 1000)}"]
    if read_only:
        options.append("-c default_transaction_read_only=on")
    params: dict[str, Any] = {
        "connect_timeout": pg.connect_timeout_seconds,
        "application_name": application_name or pg.application_name,
        "options": " ".join(options),
    }
    if password:
        params["password"] = password
    params.update(kwargs)
    try:
        return psycopg.connect(target, autocommit=autocommit, **params)
    except psycopg.OperationalError as exc:
        text = scrub(str(exc), password)
        where = redact(target)
        auth = (
            "password authentication failed" in text
            or "no password supplied" in text
            or "does not exist" in text
            or "permission denied" in text
        )
        if auth:
            hint = "" if password else f"; no password was found: set {env}_FILE (or {env})"
            raise PostgresAuthError(f"PostgreSQL refused {where}: {_last_clause(text)}{hint}") from None
        raise PostgresConnectError(f"cannot connect to PostgreSQL at {where}: {_last_clause(text)}") from None


def _last_clause(text: str) -> str:
    """libpq's most telling part: what follows the last 'failed:' (or the whole text)."""
    marker = "failed:"
    return text.rsplit(marker, 1)[-1].strip() if marker in text else text


__all__ = ["PostgresAuthError", "PostgresConnectError", "connect", "redact", "scrub"]
