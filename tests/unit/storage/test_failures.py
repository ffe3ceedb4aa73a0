"""A failed object-store request as one line: the endpoint and bucket named, the server's
message (which may echo the access key id and the string to sign) never repeated."""

from __future__ import annotations

import botocore.exceptions as bce

from saleslake.config import StorageSettings
from saleslake.storage.failures import endpoint_name, s3_failure

LOCAL = StorageSettings(endpoint_url="http://127.0.0.1:9000", allow_http=True)


def refused(code: str, status: int, message: str) -> PermissionError:
    exc = PermissionError(message)
    exc.__cause__ = bce.ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}, "ListObjectsV2"
    )
    return exc


def test_refused_credentials_name_the_endpoint_not_the_servers_message():
    line = s3_failure(refused("SignatureDoesNotMatch", 403, "AKIAKEYID StringToSign ..."), LOCAL, "lakehouse")
    assert line is not None and line.startswith("http://127.0.0.1:9000 refused the credentials for bucket 'lakehouse'")
    assert "AKIAKEYID" not in line and "StringToSign" not in line and "_FILE" in line


def test_missing_bucket_endpoint_down_and_no_credentials():
    missing = FileNotFoundError("The specified bucket does not exist")
    missing.__cause__ = bce.ClientError(
        {"Error": {"Code": "NoSuchBucket"}, "ResponseMetadata": {"HTTPStatusCode": 404}}, "ListObjectsV2"
    )
    assert (
        s3_failure(missing, LOCAL, "b1")
        == "bucket 'b1' does not exist at http://127.0.0.1:9000: create it or fix the s3:// URI"
    )
    down = bce.EndpointConnectionError(endpoint_url="http://127.0.0.1:9000/x")
    assert (s3_failure(down, LOCAL, "b1") or "").startswith("no S3 endpoint answered at http://127.0.0.1:9000")
    assert "no S3 credentials for AWS S3 (us-east-1)" in (
        s3_failure(bce.NoCredentialsError(), StorageSettings(), "b") or ""
    )


def test_other_errors_are_not_the_stores():
    assert s3_failure(ValueError("a bug"), LOCAL, "b") is None
    assert s3_failure(FileNotFoundError("/tmp/x"), LOCAL, "b") is None
    assert endpoint_name(StorageSettings(region="eu-west-1")) == "AWS S3 (eu-west-1)"
