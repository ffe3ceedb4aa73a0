"""Object storage clients from the ``[storage]`` settings (saleslake.storage): what delta-rs
and s3fs are given. Talking to a real server is tests/integration/devservices/test_s3.py."""

from __future__ import annotations

from saleslake.config import S3Credentials, StorageSettings
from saleslake.storage import delta_storage_options, s3_filesystem

KEYS = S3Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY")
LOCAL = StorageSettings(endpoint_url="http://127.0.0.1:9000", allow_http=True)


def test_delta_options_for_a_local_server():
    assert delta_storage_options(LOCAL, KEYS) == {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
        "AWS_ALLOW_HTTP": "true",
        "AWS_REGION": "us-east-1",
        "AWS_VIRTUAL_HOSTED_STYLE_REQUEST": "false",
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": KEYS.secret_access_key,
        "conditional_put": "etag",  # commits with If-None-Match: one winner per version
    }


def test_delta_options_without_keys_leave_them_to_the_aws_chain(monkeypatch):
    for name in ("SALESLAKE_S3_ACCESS_KEY_ID", "SALESLAKE_S3_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(f"{name}_FILE", raising=False)
    options = delta_storage_options(StorageSettings(region="eu-west-1"))
    assert options == {"AWS_REGION": "eu-west-1", "AWS_VIRTUAL_HOSTED_STYLE_REQUEST": "true", "conditional_put": "etag"}


def test_delta_options_read_the_credential_files(tmp_path, monkeypatch):
    (tmp_path / "id").write_text("AKIDFROMFILE\n")
    (tmp_path / "secret").write_text("s3cr3t-from-file\n")
    monkeypatch.setenv("SALESLAKE_S3_ACCESS_KEY_ID_FILE", str(tmp_path / "id"))
    monkeypatch.setenv("SALESLAKE_S3_SECRET_ACCESS_KEY_FILE", str(tmp_path / "secret"))
    options = delta_storage_options(LOCAL)
    assert (options["AWS_ACCESS_KEY_ID"], options["AWS_SECRET_ACCESS_KEY"]) == ("AKIDFROMFILE", "s3cr3t-from-file")


def test_s3_filesystem_settings():
    fs = s3_filesystem(LOCAL.model_copy(update={"region": "eu-central-1"}), KEYS)
    assert (fs.key, fs.secret, fs.endpoint_url) == (KEYS.access_key_id, KEYS.secret_access_key, LOCAL.endpoint_url)
    assert fs.client_kwargs == {"region_name": "eu-central-1"}
    assert fs.config_kwargs == {"s3": {"addressing_style": "path"}}
    assert fs.dircache.use_listings_cache is False  # another writer's objects are seen at once
    assert s3_filesystem(LOCAL, KEYS) is not s3_filesystem(LOCAL, KEYS)  # no shared instance cache
    virtual = s3_filesystem(StorageSettings(path_style=False), KEYS)
    assert virtual.config_kwargs == {"s3": {"addressing_style": "virtual"}} and virtual.endpoint_url is None
