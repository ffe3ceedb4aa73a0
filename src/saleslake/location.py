"""Where a lake lives: a local folder or a bucket prefix (``s3://bucket/prefix``).

``home`` (``--home``, ``SALESLAKE_HOME``) is parsed here, once, into a
:class:`LakeLocation`; a value that is neither a folder nor a valid ``s3://`` URI is one
:class:`~saleslake.errors.ConfigError` line. :class:`saleslake.lake.Lake` builds every
table's URI from it. This module imports no storage client, so the settings can use it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from saleslake.errors import ConfigError

#: The object stores a lake can live in (delta-rs and s3fs both speak them).
OBJECT_STORE_SCHEMES = ("s3",)

# AWS's rules for a bucket name (also S3Proxy's): 3-63 of a-z 0-9 . -, starting and
# ending with a letter or digit.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


@dataclass(frozen=True)
class LakeLocation:
    """A lake's home. ``uri``: the absolute folder (local) or ``s3://bucket/prefix``
    without a trailing slash; ``local``: the folder, None for an object store."""

    uri: str
    local: Path | None = None

    @property
    def is_local(self) -> bool:
        return self.local is not None

    @property
    def bucket(self) -> str:
        """The bucket of an object-store lake ("" for a local one)."""
        return "" if self.is_local else urlsplit(self.uri).netloc

    @property
    def prefix(self) -> str:
        """The key prefix of an object-store lake, without slashes at either end."""
        return "" if self.is_local else urlsplit(self.uri).path.strip("/")

    def join(self, *parts: str) -> str:
        """The URI (or absolute path) of ``parts`` under the home."""
        if self.local is not None:
            return str(self.local.joinpath(*parts))
        return "/".join([self.uri, *(p.strip("/") for p in parts)])


def is_object_store_uri(value: str | Path) -> bool:
    """True for ``scheme://...`` text (then :func:`parse_home` accepts only ``s3://``)."""
    return isinstance(value, str) and _SCHEME.match(value) is not None


def parse_home(value: str | Path | LakeLocation) -> LakeLocation:
    """The location ``value`` names: a folder (made absolute) or ``s3://bucket[/prefix]``.

    Raises :class:`ConfigError` (one line) for another scheme, a bad bucket name, a URI
    with credentials, a query or a fragment, or ``..`` in the prefix."""
    if isinstance(value, LakeLocation):
        return value
    if not is_object_store_uri(value):
        return LakeLocation(str(Path(value).absolute()), Path(value).absolute())
    try:
        return LakeLocation(check_object_store_uri(str(value)))
    except ValueError as exc:
        raise ConfigError(f"home: {exc}") from None


def check_object_store_uri(value: str) -> str:
    """``value`` normalised (no trailing slash), or ValueError saying what is wrong."""
    text = value.strip()
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in OBJECT_STORE_SCHEMES:
        raise ValueError(f"{text!r}: a lake lives in a local folder or at s3://bucket/prefix, not a {scheme}:// URI")
    if parts.username or parts.password or "@" in parts.netloc:
        # never echo the URI: it holds a secret
        raise ValueError(
            f"an s3:// lake URI must not hold credentials ({scheme}://…@{parts.hostname}/…): "
            "set SALESLAKE_S3_ACCESS_KEY_ID_FILE and SALESLAKE_S3_SECRET_ACCESS_KEY_FILE"
        )
    if parts.query or parts.fragment or "?" in text or "#" in text:
        raise ValueError(f"{text!r}: an s3:// lake URI takes no query or fragment")
    if not _BUCKET.match(parts.netloc):
        raise ValueError(
            f"{text!r}: {parts.netloc!r} is not a bucket name (3-63 lowercase letters, digits, '.' or '-')"
        )
    segments = [s for s in parts.path.split("/") if s]
    if any(s in (".", "..") for s in segments):
        raise ValueError(f"{text!r}: the prefix must not contain '.' or '..'")
    return "/".join([f"s3://{parts.netloc}", *segments])
