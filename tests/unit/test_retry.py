"""The retry helper: backoff between attempts, only what it is told to retry, the last
failure raised."""

from __future__ import annotations

import pytest

from saleslake.retry import retry


class Flaky(Exception):
    pass


def test_retries_with_backoff_until_it_succeeds():
    slept: list[float] = []
    calls: list[int] = []

    def call(attempt: int) -> str:
        calls.append(attempt)
        if attempt < 4:
            raise Flaky(attempt)
        return "done"

    assert retry(call, 5, lambda e: isinstance(e, Flaky), backoff=0.5, cap=1.5, sleep=slept.append) == "done"
    assert calls == [1, 2, 3, 4] and slept == [0.5, 1.0, 1.5]


def test_the_last_failure_is_raised_after_the_attempts():
    slept: list[float] = []
    with pytest.raises(Flaky, match="3"):
        retry(lambda attempt: (_ for _ in ()).throw(Flaky(attempt)), 3, lambda e: True, sleep=slept.append)
    assert len(slept) == 2


def test_other_errors_are_not_retried():
    slept: list[float] = []
    with pytest.raises(ValueError):
        retry(lambda attempt: int("x"), 5, lambda e: isinstance(e, Flaky), sleep=slept.append)
    assert slept == []
