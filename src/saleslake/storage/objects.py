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
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

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


def _refused_as_existing(exc: OSError) -> bool:
    """A conditional PUT refused because the key exists (412 Precondition Failed). s3fs
    raises FileExistsError only when the server names the condition; S3Proxy does not."""
    if isinstance(exc, FileExistsError):
        return True
    response = getattr(exc.__cause__, "response", None) or {}
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return status == 412 or response.get("Error", {}).get("Code") == "PreconditionFailed"
