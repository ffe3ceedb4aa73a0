"""Why a request to the object store failed, as one line for a user.

The line names the endpoint and the bucket, never a credential, and never repeats the
server's own message: an S3 error body may echo the access key id, the string to sign and
the canonical request (SignatureDoesNotMatch does).
"""

from __future__ import annotations

from saleslake.config import S3_ACCESS_KEY_ENV, S3_SECRET_KEY_ENV, StorageSettings

_CREDENTIALS_HINT = (
    f"check {S3_ACCESS_KEY_ENV} and {S3_SECRET_KEY_ENV} (or their _FILE files), or the AWS credentials in use"
)
_REFUSED_CODES = ("SignatureDoesNotMatch", "InvalidAccessKeyId", "AccessDenied", "InvalidToken", "ExpiredToken")


def endpoint_name(storage: StorageSettings) -> str:
    """The endpoint as a user knows it: the configured URL, else AWS S3 and its region."""
    return storage.endpoint_url or f"AWS S3 ({storage.region})"


def s3_failure(exc: BaseException, storage: StorageSettings, bucket: str) -> str | None:
    """One line for a failed request to ``bucket`` (empty: to the endpoint, e.g. listing
    the buckets), or None when ``exc`` is not a failure of the store (a bug, a local
    error): then the caller lets it through."""
    import botocore.exceptions as bce  # type: ignore[import-untyped]  # no stubs installed

    where = endpoint_name(storage)
    of_bucket = f" for bucket {bucket!r}" if bucket else ""
    if isinstance(exc, bce.NoCredentialsError):
        return f"no S3 credentials for {where}: set {S3_ACCESS_KEY_ENV}_FILE and {S3_SECRET_KEY_ENV}_FILE"
    if isinstance(exc, (bce.EndpointConnectionError, bce.ConnectTimeoutError, bce.ReadTimeoutError)):
        return f"no S3 endpoint answered at {where}: start it (saleslake services start s3) or fix storage.endpoint_url"
    response = getattr(exc.__cause__, "response", None) or getattr(exc, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code == "NoSuchBucket":
        return f"bucket {bucket!r} does not exist at {where}: create it or fix the s3:// URI"
    if code in _REFUSED_CODES or status == 403 or (not response and isinstance(exc, PermissionError)):
        return f"{where} refused the credentials{of_bucket} ({code or 'forbidden'}): {_CREDENTIALS_HINT}"
    if response:
        return f"{where} answered {status or '?'} {code or 'error'}{of_bucket}"
    return None


def reach_bucket(storage: StorageSettings, bucket: str) -> None:
    """Before a command works on a lake in ``bucket``: one line (TransientError when no
    endpoint answers, UserError for credentials or a missing bucket) instead of the first
    Delta read failing deep inside with the store's own words. One HEAD request."""
    from saleslake.errors import TransientError, UserError
    from saleslake.storage import shared_s3_filesystem

    where = endpoint_name(storage)
    down = endpoint_refused(storage.endpoint_url) if storage.endpoint_url else None
    if down:
        raise TransientError(
            f"no S3 endpoint answered at {where} ({down}): start it (saleslake services start s3) "
            "or fix storage.endpoint_url"
        )
    try:
        shared_s3_filesystem(storage).call_s3("head_bucket", Bucket=bucket)
    except FileNotFoundError:
        raise UserError(f"bucket {bucket!r} does not exist at {where}: create it or fix the s3:// URI") from None
    except Exception as exc:
        line = s3_failure(exc, storage, bucket)
        if line is None:
            raise
        kind = TransientError if line.startswith("no S3 endpoint answered") else UserError
        raise kind(line) from None


def endpoint_refused(endpoint_url: str) -> str | None:
    """Why the endpoint takes no TCP connection, or None when it does (a closed port is
    answered at once; the S3 client would retry for ~12 s first)."""
    import socket
    from urllib.parse import urlsplit

    url = urlsplit(endpoint_url)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=3.0):
            return None
    except OSError as exc:
        return exc.strerror or type(exc).__name__
