"""A write lease for a lake whose files no kernel locks (a bucket): who may write now.

A local lake is locked with ``flock`` (the kernel frees it when the holder dies). An object
store has no such lock, so the lease is an append-only log of small objects under
``_saleslake/lease/``, one per generation (``00000000000000000042.json``), each created
with an exclusive create (S3: ``If-None-Match: *``). Whoever creates generation N+1 after
reading N acts next, exactly one process can, the same way delta-rs commits table versions:

* acquire: read the newest entry; if it is held (``acquire`` or ``renew``, not expired) by
  someone else, refuse (or wait) naming the holder; else create the next generation.
* renew (a heartbeat, every third of the time to live): create the next generation as the
  holder. Failing to create it means another process took the lease after it expired:
  this holder has lost it and must not commit again (:meth:`Lease.check`).
* release: create the next generation with ``release``.

A holder killed with ``kill -9`` stops renewing: its lease expires ``ttl`` seconds after its
last entry, and the next writer takes over. Expiry compares the writer's clock with the
reader's: hosts sharing a lake need clocks in step (NTP) to well under ``ttl``. Old
generations are deleted as new ones are written (the last :data:`KEEP` stay, for
``status`` and for debugging).

One lake can hold several leases, each under its own prefix (the run lease under
:data:`PREFIX`; ``runs.silver_commit_lock`` takes another). A process registers the leases
it holds with :func:`guarding`; every Delta commit through ``lake.write_delta`` first calls
:func:`check_commit`, so a holder that lost its lease stops before it writes again.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import NoReturn

from saleslake.errors import LockBusyError, PipelineError
from saleslake.storage.objects import ObjectStore

PREFIX = "_saleslake/lease"
DEFAULT_TTL_SECONDS = 60.0
#: generations kept behind the newest one
KEEP = 16
_ENTRY = re.compile(r"(\d{20})\.json$")


@dataclass(frozen=True)
class LeaseEntry:
    generation: int
    action: str  # acquire | renew | release
    owner: str  # one id per Lease object
    host: str
    pid: int
    command: str
    written_at: float  # seconds since the epoch, on the writer's clock
    expires_at: float
    run_id: str = ""  # the ledger's run id of the holder ("" when it has none)

    def holds(self, now: float) -> bool:
        return self.action != "release" and now < self.expires_at

    def describe(self, now: float) -> str:
        since = datetime.fromtimestamp(self.written_at, UTC).isoformat(timespec="seconds")
        what = f"run {self.run_id}: {self.command}" if self.run_id else self.command
        return (
            f"{what} (pid {self.pid} on {self.host}, {self.action} at {since}, "
            f"expires in {max(0, round(self.expires_at - now))} s)"
        )

    def held_message(self, now: float) -> str:
        """Why a process that wants this lease cannot have it now (one line)."""
        return (
            f"another saleslake {self.describe(now)} holds this lake's lease; wait for it "
            f"to finish or pass --wait SECONDS (a holder that died frees it when it expires)"
        )


class LeaseHeldError(LockBusyError):
    """Another process holds the lake's lease."""


class LeaseLostError(PipelineError):
    """This process held the lease, could not renew it in time, and may no longer write."""


class Lease:
    """The lease of one lake (``store`` rooted at the lake) whose log lives under
    ``prefix``. One object per holder; ``run_id``: the holder's run, named in its entries."""

    def __init__(
        self,
        store: ObjectStore,
        ttl: float = DEFAULT_TTL_SECONDS,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        prefix: str = PREFIX,
        run_id: str = "",
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.store = store
        self.ttl = ttl
        self.prefix = prefix.strip("/")
        self.run_id = run_id
        self.sleep = sleep
        self.clock = clock
        self.monotonic = monotonic
        self.owner = uuid.uuid4().hex
        self.command = ""
        self.generation = 0  # the newest generation this holder wrote (0: none)
        self._renewed_at: float | None = None  # monotonic start of the last successful write
        self._valid_until: float | None = None  # its expiry, on the wall clock

    # -- reading -----------------------------------------------------------------------------

    def latest(self) -> LeaseEntry | None:
        """The newest entry, or None when the lake was never leased."""
        for _ in range(10):  # a listed entry can be pruned before it is read: list again
            generations = [int(m.group(1)) for k in self.store.keys(self.prefix) if (m := _ENTRY.search(k))]
            if not generations:
                return None
            data = self.store.read(self._key(max(generations)))
            if data is not None:
                return _parse(data, self._key(max(generations)))
        raise PipelineError(f"the lease log under {self.prefix}/ keeps changing while it is read; retry")

    # -- holding -----------------------------------------------------------------------------

    def acquire(
        self, command: str, wait_seconds: float = 0.0, poll_seconds: float = 0.1, max_poll_seconds: float = 2.0
    ) -> None:
        """Take the lease, waiting up to ``wait_seconds`` (``math.inf``: as long as it
        takes) while someone else holds it. It looks again after ``poll_seconds``, doubled
        after each look up to ``max_poll_seconds`` (each look is a listing and a read), and
        once more at the deadline."""
        self.command = command
        deadline = self.monotonic() + wait_seconds
        pause = poll_seconds
        while True:
            latest = self.latest()
            now = self.clock()
            if latest is not None and latest.holds(now) and latest.owner != self.owner:
                left = deadline - self.monotonic()
                if left <= 0:
                    raise LeaseHeldError(latest.held_message(now))
                self.sleep(min(pause, left))
                pause = min(pause * 2, max_poll_seconds)
                continue
            if self._write(latest.generation + 1 if latest else 1, "acquire"):
                return

    def renew(self) -> None:
        """Extend the lease by ``ttl``; LeaseLostError when another process took it.

        The newest entry must still be this holder's own: after a long stall the slot after
        its last entry may have been written and pruned by others, and creating it again
        would succeed while they hold the lease."""
        latest = self.latest()
        if latest is None or (latest.generation, latest.owner) != (self.generation, self.owner):
            self._lost(latest)
        if not self._write(self.generation + 1, "renew"):
            self._lost(self.latest())

    def _lost(self, taker: LeaseEntry | None) -> NoReturn:
        self._renewed_at = self._valid_until = None
        who = taker.describe(self.clock()) if taker else "another process"
        raise LeaseLostError(
            f"this run's lease on the lake expired and was taken by {who}; "
            f"nothing was written after that; rerun the command"
        )

    def release(self) -> None:
        """Give the lease up (nothing happens when it was lost already)."""
        if self._renewed_at is not None:
            self._write(self.generation + 1, "release")
            self._renewed_at = self._valid_until = None

    def check(self) -> None:
        """Raise LeaseLostError unless the lease was certainly held for the next moment:
        called before each commit, so a holder that could not renew in time writes nothing."""
        # both clocks: the monotonic one stops while a machine sleeps, the wall clock is the
        # one other hosts judge expiry by
        expired = self._valid_until is None or self.clock() >= self._valid_until
        if expired or self._renewed_at is None or self.monotonic() - self._renewed_at >= self.ttl:
            raise LeaseLostError(
                f"this run could not renew its lease on the lake within {self.ttl:.0f} s "
                f"(the object store did not answer); it stopped before writing more; rerun the command"
            )

    def _write(self, generation: int, action: str) -> bool:
        started = self.monotonic()
        now = self.clock()
        entry = LeaseEntry(
            generation=generation,
            action=action,
            owner=self.owner,
            host=socket.gethostname(),
            pid=os.getpid(),
            command=self.command,
            written_at=now,
            expires_at=now + self.ttl,
            run_id=self.run_id,
        )
        if not self.store.create(self._key(generation), json.dumps(asdict(entry)).encode()) and not self._own(
            generation
        ):
            return False
        self.generation = generation
        self._renewed_at = started
        self._valid_until = entry.expires_at
        self._prune(generation)
        return True

    def _own(self, generation: int) -> bool:
        """Whether the entry at ``generation`` is this holder's: a PUT whose answer was lost
        is sent again and refused because its own first try landed."""
        data = self.store.read(self._key(generation))
        return data is not None and _parse(data, self._key(generation)).owner == self.owner

    def _key(self, generation: int) -> str:
        return f"{self.prefix}/{generation:020d}.json"

    def _prune(self, generation: int) -> None:
        for key in self.store.keys(self.prefix):
            m = _ENTRY.search(key)
            if m and int(m.group(1)) < generation - KEEP:
                try:
                    self.store.delete(key)
                except OSError:
                    return  # best effort: the next write prunes again


@contextmanager
def held(lease: Lease, command: str, wait_seconds: float = 0.0) -> Iterator[Lease]:
    """Hold ``lease`` for the block, renewed by a heartbeat thread every third of its time
    to live; released at the end. A renewal the object store does not answer is retried
    at the next beat; :meth:`Lease.check` says when the lease can no longer be counted on."""
    lease.acquire(command, wait_seconds)
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(lease.ttl / 3):
            try:
                lease.renew()
            except LeaseLostError:
                return
            except OSError:
                continue

    heart = threading.Thread(target=beat, name="saleslake-lease", daemon=True)
    heart.start()
    try:
        yield lease
    finally:
        stop.set()
        heart.join()
        # a release the store does not take must not hide the block's own error: the
        # lease then simply expires
        with contextlib.suppress(OSError):
            lease.release()


#: the leases held in this context, with the location (a lake's URI) each one guards
_guards: ContextVar[tuple[tuple[str, Lease], ...]] = ContextVar("saleslake_leases", default=())


@contextmanager
def guarding(where: str, lease: Lease) -> Iterator[None]:
    """For the block, commits to tables under ``where`` (in this thread) check ``lease``
    first: :func:`check_commit`."""
    token = _guards.set((*_guards.get(), (where.rstrip("/"), lease)))
    try:
        yield
    finally:
        _guards.reset(token)


def check_commit(uri: str) -> None:
    """Before a commit to the table at ``uri``: LeaseLostError when a lease this context
    holds on the lake it lies in can no longer be counted on (:meth:`Lease.check`)."""
    for where, lease in _guards.get():
        if uri == where or uri.startswith(where + "/"):
            lease.check()


def _parse(data: bytes, key: str) -> LeaseEntry:
    try:
        return LeaseEntry(**json.loads(data))
    except (ValueError, TypeError) as exc:
        raise PipelineError(
            f"{key} is not a saleslake lease entry ({exc}); remove the object to free the lake"
        ) from None
