"""What a Java service needs to be fetched: without Maven, the one line names the jars of
the program being fetched (S3Proxy's for the S3 server, not Kafka's) and what to do."""

from __future__ import annotations

import pytest

from saleslake.devservices.jvm import MavenNotFoundError, find_maven
from saleslake.devservices.kafka import KAFKA
from saleslake.devservices.s3 import S3PROXY


@pytest.mark.parametrize(("program", "other"), [(S3PROXY, "Kafka"), (KAFKA, "S3Proxy")])
def test_without_maven_the_message_names_the_programs_own_jars(program, other, tmp_path, monkeypatch):
    for name in ("SALESLAKE_MVN", "MAVEN_HOME", "M2_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no mvn on PATH
    with pytest.raises(MavenNotFoundError) as info:
        find_maven(program)
    message = str(info.value)
    assert f"download the {program.product} jars" in message and other not in message
    assert program.instead in message and "\n" not in message
