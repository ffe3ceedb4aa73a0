"""Object storage clients from the ``[storage]`` settings (:class:`saleslake.config.StorageSettings`).

* :func:`delta_storage_options`: the ``storage_options`` delta-rs takes for ``s3://`` tables.
* :func:`s3_filesystem`: an s3fs (fsspec) filesystem, for what reads or writes objects
  directly (DuckDB's ``register_filesystem``, dbt-duckdb's ``filesystems``): DuckDB cannot
  download its httpfs extension here.

Both take the credentials from the settings (``SALESLAKE_S3_…[_FILE]``) unless given, and
leave them out when there are none, so that the standard AWS chain (``AWS_*`` variables,
profile, instance role) applies. The secret only ever goes into these in-memory objects.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from saleslake.config import S3Credentials, StorageSettings

if TYPE_CHECKING:
    import s3fs


def delta_storage_options(storage: StorageSettings, credentials: S3Credentials | None = None) -> dict[str, str]:
    """delta-rs ``storage_options`` for this object store.

    Commits use conditional puts (``If-None-Match``: ``conditional_put=etag``), so two
    writers can never both write one table version and no lock service is needed; AWS S3
    and S3Proxy both refuse such a put on an existing key (412).
    """
    options = {
        "AWS_REGION": storage.region,
        "AWS_VIRTUAL_HOSTED_STYLE_REQUEST": "false" if storage.uses_path_style() else "true",
        "conditional_put": "etag",
    }
    if storage.endpoint_url:
        options["AWS_ENDPOINT_URL"] = storage.endpoint_url
    if storage.allow_http:
        options["AWS_ALLOW_HTTP"] = "true"
    credentials = credentials or storage.credentials()
    if credentials is not None:
        options["AWS_ACCESS_KEY_ID"] = credentials.access_key_id
        options["AWS_SECRET_ACCESS_KEY"] = credentials.secret_access_key
    return options


def s3_filesystem(storage: StorageSettings, credentials: S3Credentials | None = None) -> s3fs.S3FileSystem:
    """A fresh s3fs filesystem for this object store.

    Listings are never cached: another process (a second run, a stream) may have written
    objects since, and a lake must see them.
    """
    import s3fs

    credentials = credentials or storage.credentials()
    return s3fs.S3FileSystem(
        key=credentials.access_key_id if credentials else None,
        secret=credentials.secret_access_key if credentials else None,
        **s3fs_options(storage),
    )


def shared_s3_filesystem(storage: StorageSettings) -> s3fs.S3FileSystem:
    """One s3fs client per storage settings and credentials, kept for the process: a stream
    takes the silver lease every batch, and a new client costs more than the lease's
    requests. (Listings are still never cached.)"""
    return _filesystem_for(storage.model_dump_json(), storage.credentials())


@functools.lru_cache(maxsize=8)
def _filesystem_for(storage_json: str, credentials: S3Credentials | None) -> s3fs.S3FileSystem:
    return s3_filesystem(StorageSettings.model_validate_json(storage_json), credentials)


def s3fs_options(storage: StorageSettings) -> dict[str, Any]:
    """The s3fs ``S3FileSystem`` arguments of this object store, without the credentials
    (dbt-duckdb's ``filesystems`` profile entry takes them as plain values)."""
    return {
        "endpoint_url": storage.endpoint_url,
        "client_kwargs": {"region_name": storage.region},
        "config_kwargs": {"s3": {"addressing_style": "path" if storage.uses_path_style() else "virtual"}},
        "use_listings_cache": False,
        "skip_instance_cache": True,
    }


__all__ = ["delta_storage_options", "s3_filesystem", "s3fs_options", "shared_s3_filesystem"]
