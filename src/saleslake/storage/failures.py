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
