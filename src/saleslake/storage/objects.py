"""Small objects a lake keeps beside its tables (leases, stream heartbeats), with the one
operation coordination needs: create a key only if it does not exist yet, atomically; and a
plain overwrite (``put``) that readers see whole or not at all.

* :class:`LocalObjects`: a folder; the exclusive create is a hard link of a complete
  temporary file (``link`` fails when the name exists), so a reader never sees half an
  object and two creators never both win.
* :class:`S3Objects`: a bucket prefix through s3fs; the exclusive create is a PUT with
  ``If-None-Match: *``, which AWS S3 and S3-compatible servers (S3Proxy) refuse with 412
  when the key exists. delta-rs commits the same way, so no lock service is needed.

Keys are relative to the store's root and use ``/``.

Bronze objects (raw files, content-addressed: a key names its bytes) use the other half:
:meth:`ObjectStore.write_once` and :meth:`ObjectStore.upload_once` write a key unless it
exists, a reader never seeing half an object; ``upload_once`` streams a file of any size
in bounded memory and checks that the bytes sent still hash to the name they land under.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from pathlib import Path
from typing import IO, TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import s3fs


class ObjectStore(Protocol):
    def create(self, key: str, data: bytes) -> bool:
        """Write ``data`` at ``key`` unless the key exists; False when it does."""
        ...

    def put(self, key: str, data: bytes) -> None:
        """Write ``data`` at ``key``, replacing what was there; readers see the old or the
        new bytes, never a mix."""
        ...

    def read(self, key: str) -> bytes | None:
        """The object's bytes, or None when there is no such key."""
        ...

    def keys(self, prefix: str) -> list[str]:
        """The keys directly under ``prefix`` (a folder-like key), sorted."""
        ...

    def delete(self, key: str) -> None:
        """Remove the key; a missing key is not an error."""
        ...

    def exists(self, key: str) -> bool: ...

    def size(self, key: str) -> int | None:
        """The object's size in bytes, or None when there is no such key."""
        ...

    def uri(self, key: str) -> str:
        """What a reader opens: the file's path, or ``s3://bucket/prefix/key``."""
        ...

    def open(self, key: str) -> IO[bytes]:
        """The object, opened for reading (streamed: nothing is read ahead of the caller)."""
        ...

    def write_once(self, key: str, data: bytes) -> bool:
        """Write ``data`` at ``key`` unless the key exists (then False): for content-addressed
        objects, whose bytes are the same whoever writes them."""
        ...

    def upload_once(self, key: str, source: Path, sha256: str) -> bool:
        """Stream ``source`` to ``key`` unless the key exists (then False), checking that the
        bytes sent hash to ``sha256``: :class:`ContentChangedError` when not, and then
        nothing is left under ``key``."""
        ...


class ContentChangedError(Exception):
    """The bytes streamed to an object do not hash to what they were expected to."""


#: Files are read (and hashed) in blocks of this size while they are copied or uploaded.
COPY_BLOCK_BYTES = 1 << 20
#: An upload to a bucket sends parts of this size (S3's minimum is 5 MiB), or larger ones
#: for a file of more than :data:`MAX_PARTS` of them: memory per upload stays at a few
#: parts (s3fs's buffer, the part sent and the client's copy), whatever the file's size.
UPLOAD_PART_BYTES = 8 << 20
#: S3 takes at most 10,000 parts per upload.
MAX_PARTS = 10_000


def part_bytes_for(size: int) -> int:
    """The part size an upload of ``size`` bytes uses."""
    return max(UPLOAD_PART_BYTES, -(-size // MAX_PARTS))


class LocalObjects:
    """Objects as files under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*key.split("/"))

    def create(self, key: str, data: bytes) -> bool:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        with open(scratch, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(scratch, target)
            return True
        except FileExistsError:
            return False
        finally:
            scratch.unlink()

    def put(self, key: str, data: bytes) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        # a hidden scratch name: keys() never lists it, a reader never sees half a file
        scratch = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        try:
            scratch.write_bytes(data)
            os.replace(scratch, target)
        finally:
            scratch.unlink(missing_ok=True)

    def read(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None

    def keys(self, prefix: str) -> list[str]:
        folder = self._path(prefix)
        if not folder.is_dir():
            return []
        base = prefix.rstrip("/")
        return sorted(f"{base}/{p.name}" for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    def size(self, key: str) -> int | None:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            return None

    def uri(self, key: str) -> str:
        return str(self._path(key))

    def open(self, key: str) -> IO[bytes]:
        return self._path(key).open("rb")

    def write_once(self, key: str, data: bytes) -> bool:
        # via a temporary name and a rename: a crash never leaves a half file under the key
        target = self._path(key)
        if target.exists():
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = _partial_name(target)
        try:
            partial.write_bytes(data)
        except BaseException:  # a full disk: leave no half file behind, and give its room back
            partial.unlink(missing_ok=True)
            raise
        os.replace(partial, target)
        return True

    def upload_once(self, key: str, source: Path, sha256: str) -> bool:
        target = self._path(key)
        if target.exists():
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = _partial_name(target)
        digest = hashlib.sha256()
        try:
            with source.open("rb") as src, partial.open("wb") as dst:
                for block in iter(lambda: src.read(COPY_BLOCK_BYTES), b""):
                    digest.update(block)
                    dst.write(block)
        except BaseException:  # a full disk: leave no half file behind, and give its room back
            partial.unlink(missing_ok=True)
            raise
        if digest.hexdigest() != sha256:
            partial.unlink()
            raise ContentChangedError(str(source))
        os.replace(partial, target)
        return True


def _partial_name(target: Path) -> Path:
    # unique: two identical files of one ingest may be written at the same time
    return target.with_name(f"{target.name}.{uuid.uuid4().hex}.partial")


class S3Objects:
    """Objects under ``s3://bucket/prefix`` (``root`` is ``bucket/prefix``)."""

    def __init__(self, fs: s3fs.S3FileSystem, root: str) -> None:
        self.fs = fs
        self.root = root.strip("/")

    def _path(self, key: str) -> str:
        return f"{self.root}/{key.strip('/')}"

    def create(self, key: str, data: bytes) -> bool:
        try:
            self.fs.pipe_file(self._path(key), data, mode="create")
            return True
        except OSError as exc:
            if _refused_as_existing(exc):
                return False
            raise

    def put(self, key: str, data: bytes) -> None:
        # one PUT: S3 replaces an object atomically
        self.fs.pipe_file(self._path(key), data)

    def read(self, key: str) -> bytes | None:
        try:
            return bytes(self.fs.cat_file(self._path(key)))
        except FileNotFoundError:
            return None

    def keys(self, prefix: str) -> list[str]:
        base = prefix.strip("/")
        try:
            listed = self.fs.ls(self._path(base), detail=False)
        except FileNotFoundError:
            return []
        names = (str(p).rsplit("/", 1)[-1] for p in listed)
        return sorted(f"{base}/{name}" for name in names if name)

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self._path(key))

    def exists(self, key: str) -> bool:
        return self.size(key) is not None

    def size(self, key: str) -> int | None:
        try:
            return int(self.fs.info(self._path(key))["size"])
        except FileNotFoundError:
            return None

    def uri(self, key: str) -> str:
        return f"s3://{self._path(key)}"

    def open(self, key: str) -> IO[bytes]:
        # no read-ahead cache: callers read each object once, front to back, in blocks
        return self.fs.open(self._path(key), "rb", cache_type="none")

    def write_once(self, key: str, data: bytes) -> bool:
        if self.exists(key):  # a HEAD instead of sending the bytes again
            return False
        created = self.create(key, data)
        if created:
            self._check_etag(key, len(data), _etag_of([hashlib.md5(data, usedforsecurity=False).digest()]))
        return created

    def upload_once(self, key: str, source: Path, sha256: str) -> bool:
        """A multipart upload of :func:`part_bytes_for` parts, completed only if the bytes
        sent hash to ``sha256`` (else aborted) and only if the key is still absent
        (``If-None-Match: *`` on the completion); the object's size and ETag are checked."""
        if self.exists(key):
            return False
        part_size = part_bytes_for(source.stat().st_size)
        digest, part_md5s, sent = hashlib.sha256(), [], 0
        part = hashlib.md5(usedforsecurity=False)
        part_bytes = 0
        out = self.fs.open(self._path(key), "xb", block_size=part_size)
        try:
            with source.open("rb") as src:
                for block in iter(lambda: src.read(COPY_BLOCK_BYTES), b""):
                    digest.update(block)
                    part.update(block)
                    part_bytes += len(block)
                    sent += len(block)
                    out.write(block)
                    if part_bytes >= part_size:  # s3fs sends its buffer as one part now
                        part_md5s.append(part.digest())
                        part, part_bytes = hashlib.md5(usedforsecurity=False), 0
            if part_bytes or not part_md5s:
                part_md5s.append(part.digest())
            if digest.hexdigest() != sha256:
                raise ContentChangedError(str(source))
            out.close()  # completes the upload: If-None-Match
        except OSError as exc:
            _discard(out)
            if _refused_as_existing(exc):
                return False
            raise
        except BaseException:
            _discard(out)  # aborts the multipart upload: no part is left behind
            raise
        # s3fs sent one PUT when the file was smaller than a part, else parts
        self._check_etag(key, sent, _etag_of(part_md5s, multipart=sent >= part_size))
        return True

    def _check_etag(self, key: str, size: int, expected_etag: str) -> None:
        """The object holds what was sent: its size, and its ETag where the server gives
        the usual MD5 one (a server that encrypts or computes another kind is trusted on
        size). An object that differs is removed: nothing may name wrong bytes."""
        info = self.fs.info(self._path(key))
        etag = str(info.get("ETag") or info.get("etag") or "").strip('"')
        wrong_size = int(info["size"]) != size
        if wrong_size or (_looks_like_md5_etag(etag) and etag != expected_etag):
            self.delete(key)
            raise OSError(f"s3://{self._path(key)}: the stored object differs from the bytes sent")


def _discard(upload: IO[bytes]) -> None:
    """Abort an unfinished upload: its parts are dropped and nothing is written under its
    key; marked closed, so that collecting it does not try to complete it."""
    upload.discard()  # type: ignore[attr-defined]
    upload.closed = True  # type: ignore[misc]


def _etag_of(part_md5s: list[bytes], multipart: bool = False) -> str:
    """The ETag S3 gives an object sent in one PUT (its MD5) or in these parts (the MD5 of
    the parts' MD5s, then ``-<parts>``)."""
    if not multipart:
        return part_md5s[0].hex()
    return f"{hashlib.md5(b''.join(part_md5s), usedforsecurity=False).hexdigest()}-{len(part_md5s)}"


def _looks_like_md5_etag(etag: str) -> bool:
    head, _, parts = etag.partition("-")
    return len(head) == 32 and all(c in "0123456789abcdef" for c in head) and (not parts or parts.isdigit())


def _refused_as_existing(exc: OSError) -> bool:
    """A conditional PUT refused because the key exists (412 Precondition Failed). s3fs
    raises FileExistsError only when the server names the condition; S3Proxy does not."""
    if isinstance(exc, FileExistsError):
        return True
    response = getattr(exc.__cause__, "response", None) or {}
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return status == 412 or response.get("Error", {}).get("Code") == "PreconditionFailed"
