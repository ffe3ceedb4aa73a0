"""The ``[storage]`` settings and the S3 credentials (saleslake.config): typed, from the
environment or TOML, credentials only from variables or the files their ``_FILE`` names."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from saleslake.config import S3Credentials, load_settings
from saleslake.errors import ConfigError, UserError

SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"


@pytest.fixture(autouse=True)
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no stray saleslake.toml
    for name in list(os.environ):
        if name.startswith("SALESLAKE_"):
            monkeypatch.delenv(name)


def secret_file(path: Path, value: str) -> Path:
    path.write_text(value + "\n")
    path.chmod(0o600)
    return path


def test_storage_defaults_are_aws_with_the_standard_credential_chain() -> None:
    storage = load_settings().storage
    assert (storage.endpoint_url, storage.region, storage.allow_http) == (None, "us-east-1", False)
    assert storage.uses_path_style() is False  # virtual-hosted on AWS
    assert storage.credentials() is None  # the AWS chain decides


def test_storage_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SALESLAKE_STORAGE__ENDPOINT_URL", "http://127.0.0.1:9000/")
    monkeypatch.setenv("SALESLAKE_STORAGE__ALLOW_HTTP", "true")
    monkeypatch.setenv("SALESLAKE_STORAGE__REGION", "eu-central-1")
    storage = load_settings().storage
    assert storage.endpoint_url == "http://127.0.0.1:9000"
    assert storage.region == "eu-central-1" and storage.allow_http is True
    assert storage.uses_path_style() is True  # custom endpoint: path-style unless said otherwise
    monkeypatch.setenv("SALESLAKE_STORAGE__PATH_STYLE", "false")
    assert load_settings().storage.uses_path_style() is False


def test_storage_from_toml(tmp_path: Path) -> None:
    (tmp_path / "saleslake.toml").write_text(
        '[storage]\nendpoint_url = "https://objects.example:8443"\nregion = "auto"\npath_style = true\n'
    )
    storage = load_settings().storage
    assert (storage.endpoint_url, storage.region, storage.uses_path_style()) == (
        "https://objects.example:8443",
        "auto",
        True,
    )


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("127.0.0.1:9000", "not an http:// or https:// URL"),
        ("http://key:secret@127.0.0.1:9000", "must not hold credentials"),
        ("http://127.0.0.1:9000/bucket", "no path"),
    ],
)
def test_a_bad_endpoint_is_one_line_naming_the_setting(monkeypatch: pytest.MonkeyPatch, value: str, needle: str):
    monkeypatch.setenv("SALESLAKE_STORAGE__ENDPOINT_URL", value)
    monkeypatch.setenv("SALESLAKE_STORAGE__ALLOW_HTTP", "true")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert "\n" not in message and "storage.endpoint_url" in message and needle in message
    assert "secret" not in message.replace("must not hold credentials", "")


def test_plain_http_needs_allow_http(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SALESLAKE_STORAGE__ENDPOINT_URL", "http://127.0.0.1:9000")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "SALESLAKE_STORAGE__ALLOW_HTTP" in str(caught.value) and "\n" not in str(caught.value)


def test_credentials_from_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SALESLAKE_S3_ACCESS_KEY_ID_FILE", str(secret_file(tmp_path / "id", "AKIDEXAMPLE")))
    monkeypatch.setenv("SALESLAKE_S3_SECRET_ACCESS_KEY_FILE", str(secret_file(tmp_path / "secret", SECRET)))
    credentials = load_settings().storage.credentials()
    assert credentials == S3Credentials("AKIDEXAMPLE", SECRET)
    assert SECRET not in repr(credentials) and SECRET not in repr(load_settings())


def test_credentials_from_variables_win_over_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SALESLAKE_S3_ACCESS_KEY_ID", "AKIDFROMENV")
    monkeypatch.setenv("SALESLAKE_S3_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("SALESLAKE_S3_ACCESS_KEY_ID_FILE", str(tmp_path / "never-read"))
    assert load_settings().storage.credentials() == S3Credentials("AKIDFROMENV", SECRET)


def test_a_missing_credential_file_is_one_line_user_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nowhere" / "secret-access-key"
    monkeypatch.setenv("SALESLAKE_S3_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("SALESLAKE_S3_SECRET_ACCESS_KEY_FILE", str(missing))
    with pytest.raises(UserError) as caught:
        load_settings().storage.credentials()
    message = str(caught.value)
    assert isinstance(caught.value, ConfigError) and caught.value.exit_code == 1
    assert "\n" not in message
    assert "SALESLAKE_S3_SECRET_ACCESS_KEY_FILE" in message and str(missing) in message
    assert "No such file" in message


def test_an_empty_credential_file_is_one_line_user_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SALESLAKE_S3_ACCESS_KEY_ID_FILE", str(secret_file(tmp_path / "id", "")))
    monkeypatch.setenv("SALESLAKE_S3_SECRET_ACCESS_KEY", SECRET)
    with pytest.raises(ConfigError, match=r"SALESLAKE_S3_ACCESS_KEY_ID_FILE names .*, which is empty"):
        load_settings().storage.credentials()


def test_half_a_key_pair_is_one_line_user_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SALESLAKE_S3_SECRET_ACCESS_KEY_FILE", str(secret_file(tmp_path / "secret", SECRET)))
    with pytest.raises(ConfigError) as caught:
        load_settings().storage.credentials()
    message = str(caught.value)
    assert "\n" not in message and SECRET not in message
    assert "SALESLAKE_S3_ACCESS_KEY_ID" in message and "standard AWS credentials" in message
