"""One retry helper with exponential backoff for transient failures (a PostgreSQL server
restarting, a lock timeout, a Kafka broker not up yet), used by every place that retries.

    result = retry(lambda attempt: publish_once(), attempts=5, retry_on=is_transient)

``call`` gets the attempt number (1, 2, ...). An exception for which ``retry_on`` is
true is retried after ``backoff × 2^(attempt-1)`` seconds (at most ``cap``) until
``attempts`` tries were made; then it is raised. Any other exception is raised at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def backoff_seconds(attempt: int, backoff: float, cap: float) -> float:
    """The wait after failed attempt ``attempt`` (1-based)."""
    return min(backoff * 2 ** (attempt - 1), cap)


def retry(
    call: Callable[[int], T],
    attempts: int,
    retry_on: Callable[[BaseException], bool],
    backoff: float = 0.5,
    cap: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``call(attempt)`` until it returns, retrying what ``retry_on`` accepts (see module doc)."""
    attempt = 1
    while True:
        try:
            return call(attempt)
        except Exception as exc:
            if attempt >= attempts or not retry_on(exc):
                raise
        sleep(backoff_seconds(attempt, backoff, cap))
        attempt += 1
