"""CSV exports in a bucket: ``ingest csv s3://bucket/exports/`` (or one ``…/day.csv``).

The objects are found by listing the prefix (every ``*.csv`` below it, recursively, in key
order, as :func:`saleslake.sources.csv.expand_paths` does for a folder) and are copied,
streamed, into the lake's local scratch (``lake.tmp/exports/<uuid>/``) before they land:
the sniffer, the hashing and the landing then read local files with the same dialect
detection and options as any other export, in bounded memory, and each copy keeps its
folder's name (a file's default source). The manifest's ``original_path`` of such a file is
its ``s3://`` URI; the copies are removed when the ingest ends. The bucket is reached with
the ``[storage]`` settings and credentials of the lake (:func:`saleslake.storage.s3_filesystem`).

Problems are one line naming the URI, never a key: no such bucket, nothing under the
prefix, no CSV object under it, credentials refused, the endpoint unreachable.
"""

from __future__ import annotations

import contextlib
import shutil
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from saleslake.config import StorageSettings
from saleslake.errors import InputFileError, TransientError, UserError
from saleslake.location import check_object_store_uri, is_object_store_uri
from saleslake.storage import s3_filesystem

if TYPE_CHECKING:
    import s3fs

    from saleslake.bronze import LandResult


def is_remote(path: str | Path) -> bool:
    """Whether ``path`` names objects in a bucket (``s3://…``) rather than local files."""
    return is_object_store_uri(str(path)) if isinstance(path, str) else False


def _csv_keys(fs: s3fs.S3FileSystem, uri: str) -> list[str]:
    """The ``bucket/key`` of each CSV object ``uri`` names (one object, or every ``*.csv``
    under a prefix), sorted; InputFileError when there is none."""
    try:
        normalised = check_object_store_uri(uri)
    except ValueError as exc:
        raise InputFileError(uri, str(exc)) from None
    root = normalised.removeprefix("s3://")
    bucket = root.split("/", 1)[0]
    try:
        fs.info(bucket)  # (s3fs's exists() says True for a missing bucket on some servers)
    except FileNotFoundError:
        raise InputFileError(
            uri, f"no such bucket {bucket!r}", "check the bucket name and [storage] endpoint_url"
        ) from None
    if not uri.endswith("/") and fs.isfile(root):
        return [root]
    found = sorted(str(k) for k in fs.find(root) if str(k).lower().endswith(".csv"))
    if not found:
        what = "no CSV object (*.csv) under it" if fs.exists(root) else "no such object or prefix"
        raise InputFileError(uri, what)
    return found


def _one_line(uri: str, exc: Exception) -> Exception:
    """A storage failure as one line naming ``uri`` (never a credential)."""
    if isinstance(exc, PermissionError):
        return UserError(
            f"{uri}: access denied by the object store: check the credentials "
            "(SALESLAKE_S3_ACCESS_KEY_ID[_FILE], SALESLAKE_S3_SECRET_ACCESS_KEY[_FILE] or the AWS chain)"
        )
    name = type(exc).__name__
    if "Endpoint" in name or "Connect" in name or isinstance(exc, ConnectionError | TimeoutError):
        return TransientError(f"{uri}: the object store cannot be reached ({name}); check [storage] endpoint_url")
    return UserError(f"{uri}: cannot be read from the object store ({name})")


@contextlib.contextmanager
def staged_exports(
    paths: Sequence[str | Path], storage: StorageSettings, scratch: Path
) -> Iterator[tuple[list[Path], Mapping[Path, str]]]:
    """``paths`` with every ``s3://`` one replaced by local copies of its CSV objects under
    ``scratch``, and the URI each copy came from; the copies are removed on exit."""
    remote = [str(p) for p in paths if is_remote(p)]
    if not remote:
        yield [Path(p) for p in paths], {}
        return
    fs = s3_filesystem(storage)
    folder = scratch / "exports" / uuid.uuid4().hex
    origins: dict[Path, str] = {}
    local: list[Path] = []
    try:
        for path in paths:
            if not is_remote(path):
                local.append(Path(path))
                continue
            uri = str(path)
            try:
                keys = _csv_keys(fs, uri)
                for key in keys:
                    # one folder per copy (two prefixes may hold the same names), in which
                    # the object's own folder name is kept: it is the file's default source
                    parent, _, name = key.rpartition("/")
                    copy = folder / str(len(origins)) / parent.rsplit("/", 1)[-1] / name
                    copy.parent.mkdir(parents=True, exist_ok=True)
                    fs.get_file(key, str(copy))  # streamed to disk in blocks
                    origins[copy] = f"s3://{key}"
                    local.append(copy)
            except (InputFileError, UserError):
                raise
            except Exception as exc:  # botocore and aiohttp errors are not OSErrors
                raise _one_line(uri, exc) from None
        yield local, origins
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def named_by_origin(result: LandResult, origins: Mapping[Path, str]) -> LandResult:
    """``result`` with each staged copy named by the URI it came from."""
    if not origins:
        return result
    by_text = {str(copy): uri for copy, uri in origins.items()}
    result.already_landed = [by_text.get(p, p) for p in result.already_landed]
    result.header_only = [by_text.get(p, p) for p in result.header_only]
    result.errors = [InputFileError(by_text.get(e.path, e.path), e.problem, e.hint, e.line) for e in result.errors]
    return result


__all__ = ["is_remote", "named_by_origin", "staged_exports"]
