"""Discover regional CSV exports and decide their dialect.

Detection reads only the head of each file: the whole header (to map columns), and a
sample of rows (delimiter, decimal mark, date order). Whether a file is header-only is
decided with certainty: from the head when data follows the header there, else from the
rest of the file. The date order is decided per *source*, pooling evidence from every
file of that source, because a daily export often has only days <= 12 and cannot decide
alone; when nothing decides it, we refuse to guess.
"""

from __future__ import annotations

import codecs
import csv
import functools
import io
import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from saleslake.contract import (
    CSV_FIELDS,
    OPTIONAL_CSV_COLUMNS,
    canonical_column,
)
from saleslake.errors import InputFileError

# A quick look decides delimiter, decimal mark and, usually, the date order; a source whose
# dates stay ambiguous gets a deep look (more rows of every file) before we give up.
SNIFF_BYTES = 32 * 1024
SAMPLE_ROWS = 60
DEEP_SNIFF_BYTES = 4 * 1024 * 1024
DEEP_SAMPLE_ROWS = 100_000
# The header is read whole, however long (100,000 columns take ~2 MB); a first line longer
# than this is not a header.
MAX_HEADER_BYTES = 16 * 1024 * 1024
# Headers up to this length are cached (a folder of daily exports repeats one header).
CACHED_HEADER_CHARS = 64 * 1024
# The csv module refuses fields over 128 KiB by default: a header split on the wrong
# delimiter is one field, and a sampled row may hold a long product name. The text it
# parses is already in memory, bounded by these sizes.
csv.field_size_limit(max(csv.field_size_limit(), MAX_HEADER_BYTES + DEEP_SNIFF_BYTES))
DELIMITERS = (",", ";", "\t", "|")
REQUIRED_COLUMNS = tuple(v for v in CSV_FIELDS.values() if v not in OPTIONAL_CSV_COLUMNS)

_LINE_END = re.compile(r"[\r\n]")
_DMY = re.compile(r"^\s*(\d{1,2})([-/.])(\d{1,2})\2(\d{2}|\d{4})\s*$")
_ISO = re.compile(r"^\s*\d{4}-\d{2}-\d{2}\s*$")
_DECIMAL_COMMA = re.compile(r"^\s*-?\d+,\d+\s*$")
_DECIMAL_POINT = re.compile(r"^\s*-?\d+\.\d+\s*$")


@dataclass(frozen=True)
class CsvOverrides:
    """Dialect options given by the user; ``None`` means detect."""

    delimiter: str | None = None
    decimal: str | None = None
    date_format: str | None = None
    encoding: str | None = None


@dataclass(frozen=True)
class DateEvidence:
    """What a sample of date values says about their format."""

    separator: str | None = None
    year_digits: int | None = None
    iso: bool = False
    day_first_seen: bool = False  # a first component > 12
    month_first_seen: bool = False  # a second component > 12

    def merge(self, other: DateEvidence) -> DateEvidence:
        return DateEvidence(
            separator=self.separator or other.separator,
            year_digits=self.year_digits or other.year_digits,
            iso=self.iso or other.iso,
            day_first_seen=self.day_first_seen or other.day_first_seen,
            month_first_seen=self.month_first_seen or other.month_first_seen,
        )


@dataclass(frozen=True)
class CsvFile:
    """One sniffed file: everything needed to land and later parse it."""

    path: Path
    encoding: str
    delimiter: str
    decimal: str
    header: tuple[str, ...]
    columns: dict[str, int] = field(default_factory=dict)  # canonical name -> position
    extra_columns: tuple[str, ...] = ()
    dates: DateEvidence = DateEvidence()
    date_format: str | None = None
    data_rows_seen: int = 0


def expand_paths(paths: Iterable[Path]) -> list[Path]:
    """Files as given, folders expanded to their ``*.csv`` files (recursively, sorted)."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() == ".csv"))
        elif path.is_file():
            found.append(path)
        else:
            raise InputFileError(str(path), "no such file or folder")
    return found


def _utf8_error(raw: bytes) -> UnicodeDecodeError | None:
    """Why ``raw`` (a head: it may end in the middle of a character, which is no error)
    is not UTF-8, or None."""
    try:
        codecs.getincrementaldecoder("utf-8")().decode(raw, final=False)
    except UnicodeDecodeError as exc:
        return exc
    return None


def _is_utf8_codec(path: Path, encoding: str) -> bool:
    try:
        return codecs.lookup(encoding).name in ("utf-8", "utf-8-sig")
    except LookupError:
        raise InputFileError(
            str(path), f"unknown encoding {encoding!r}", "pass a Python codec name such as latin-1 or cp1252"
        ) from None


def _refuse_a_utf8_bom_read_otherwise(path: Path, head: bytes, encoding: str | None) -> None:
    """``--encoding`` other than UTF-8 on a file that starts with a UTF-8 BOM and whose
    head is UTF-8 indeed: refused, it would garble every character beyond ASCII (and the
    BOM read as cp1252, "ï»¿", spoiled the first column's name: "missing required column(s):
    Row ID" pointed at the wrong cause). A BOM before text that is not UTF-8 (a cp1252
    file behind a UTF-8 BOM) is skipped: that option is the only way to read such a file."""
    if not encoding or not head.startswith(codecs.BOM_UTF8) or _is_utf8_codec(path, encoding):
        return
    if _utf8_error(head[len(codecs.BOM_UTF8) :]) is None:
        raise InputFileError(
            str(path),
            f"starts with a UTF-8 byte-order mark and is UTF-8, not {encoding}",
            "drop --encoding for this file (its encoding is detected)",
            line=1,
        )


def _decode_head(path: Path, raw: bytes, encoding: str | None) -> tuple[str, str]:
    """The head of the file as text, and the encoding to parse it with.

    The head decides the encoding, with or without a UTF-8 byte-order mark: UTF-8 when it
    is valid UTF-8, else the file is refused (``--encoding``); bytes that are not UTF-8
    past the head are the reader's to reject, one record each. With ``--encoding``, a BOM
    is a marker, not part of the header (see :func:`_refuse_a_utf8_bom_read_otherwise`)."""
    if not raw:
        raise InputFileError(str(path), "the file is empty", "export it again or remove it")
    bom = len(codecs.BOM_UTF8) if raw.startswith(codecs.BOM_UTF8) else 0
    if encoding:
        if not _is_utf8_codec(path, encoding) and bom:  # (an unknown encoding is refused here)
            raw = raw[bom:]
        return raw.decode(encoding, errors="replace"), encoding
    if b"\x00" in raw[:4096]:
        raise InputFileError(str(path), "binary data, not a CSV text file", "check that the right file was exported")
    error = _utf8_error(raw[bom:])
    if error is not None:
        offset = bom + error.start
        raise InputFileError(
            str(path),
            f"not valid UTF-8 (byte 0x{raw[offset]:02x} at offset {offset})"
            + (" although it starts with a UTF-8 byte-order mark" if bom else ""),
            "pass --encoding, e.g. --encoding cp1252",
            line=raw[:offset].count(b"\n") + 1,
        )
    # The head may end in the middle of a multi-byte character: leave only that out.
    text = codecs.getincrementaldecoder("utf-8")().decode(raw[bom:], final=False)
    return text, "utf-8-sig" if bom else "utf-8"


@dataclass(frozen=True)
class _Head:
    """The start of a file as text: its whole first line and what follows it."""

    text: str
    encoding: str
    whole_file: bool
    bytes_read: int


def _line_end(text: str) -> int:
    found = _LINE_END.search(text)
    return found.start() if found else -1


def _read_head(path: Path, overrides: CsvOverrides, body_bytes: int) -> _Head:
    """The whole first line of ``path`` and about ``body_bytes`` after it; more, up to
    DEEP_SNIFF_BYTES after it, while no complete record follows the first line (a first
    record may be longer than a quick look: a 40,000-character product name, after a line
    break inside quotes or not)."""
    wanted, raw, delimiter, head = body_bytes, b"", None, None
    with path.open("rb") as handle:
        while head is None:
            raw += handle.read(wanted - len(raw))
            text, used = _decode_head(path, raw, overrides.encoding)
            if len(raw) < wanted:
                head = _Head(text, used, whole_file=True, bytes_read=len(raw))
                continue
            header_end = _line_end(text)
            if header_end < 0:
                if len(raw) >= MAX_HEADER_BYTES:
                    raise InputFileError(
                        str(path),
                        f"the first line is longer than {MAX_HEADER_BYTES:,} bytes: not a CSV header",
                        "check that the right file was exported",
                        line=1,
                    )
                wanted = min(2 * wanted, MAX_HEADER_BYTES)
            elif len(raw) < header_end + body_bytes:
                wanted = header_end + body_bytes
            elif len(raw) >= header_end + DEEP_SNIFF_BYTES:
                head = _Head(text, used, whole_file=False, bytes_read=len(raw))
            else:
                delimiter = delimiter or _delimiter_of(text[:header_end], overrides.delimiter)
                if _sample_rows(text[header_end:], delimiter, 1, whole=False):
                    head = _Head(text, used, whole_file=False, bytes_read=len(raw))
                else:
                    wanted = min(2 * wanted, header_end + DEEP_SNIFF_BYTES)
    # on the whole head, as the decision without --encoding (the look may have grown)
    _refuse_a_utf8_bom_read_otherwise(path, raw, overrides.encoding)
    return head


def _header_only(path: Path, head: _Head) -> bool:
    """Whether nothing but line ends follows the first line: decided from the head when
    it shows data after the header or is the whole file, else by reading the rest of the
    file (in blocks, until the first character that is not a line end)."""
    header_end = _line_end(head.text)
    if header_end >= 0 and head.text[header_end:].strip("\r\n"):
        return False
    if head.whole_file:
        return True
    decoder = codecs.getincrementaldecoder(head.encoding)(errors="replace")
    in_header = True
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            text = decoder.decode(block)
            if in_header:
                header_end = _line_end(text)
                if header_end < 0:
                    continue
                text, in_header = text[header_end:], False
            if text.strip("\r\n"):
                return False
    return in_header or not decoder.decode(b"", final=True).strip("\r\n")


_LINE_END_BYTE = re.compile(rb"[\r\n]")


def _text_after_the_look(path: Path, head: _Head, body_bytes: int) -> tuple[str, bool]:
    """When the first record is longer than the look: about ``body_bytes`` of text after
    the line end that follows the look (skipped in blocks), and whether it runs to the end
    of the file. Only for encodings whose line ends (LF, CR LF or a lone CR) are the single
    bytes 0x0A and 0x0D, which are then character boundaries."""
    encoding = "utf-8" if head.encoding == "utf-8-sig" else head.encoding
    if "\r\n".encode(encoding, errors="ignore") != b"\r\n":
        return "", True
    with path.open("rb") as handle:
        handle.seek(head.bytes_read)
        for block in iter(lambda: handle.read(1 << 20), b""):
            end = _LINE_END_BYTE.search(block)
            if end:
                rest = block[end.end() :]
                rest += handle.read(max(0, body_bytes - len(rest)))
                return rest.decode(encoding, errors="replace"), len(rest) < body_bytes
    return "", True


def _sample_rows(body: str, delimiter: str, count: int, whole: bool) -> list[list[str]]:
    """The first ``count`` records of ``body`` (text that starts at a line end), read as
    the reader will: a line end inside quotes is part of its field, and empty lines are
    no records (however many follow the header, they must not fill the sample: 70 of them
    left it empty, the decimal mark and the date order undecided). Unless ``body`` is
    ``whole``, its last record may be cut: it is left out."""
    reader = csv.reader(io.StringIO(body, newline=None), delimiter=delimiter, quotechar='"')
    rows = list(itertools.islice((row for row in reader if row), count + 1))
    if not whole and len(rows) <= count:
        rows = rows[:-1]
    return rows[:count]


def _split_header(line: str, delimiter: str) -> list[str]:
    return next(csv.reader([line], delimiter=delimiter, quotechar='"'), [])


@functools.lru_cache(maxsize=256)
def _best_split(header_line: str, candidates: tuple[str, ...]) -> tuple[int, str, tuple[str, ...]]:
    """(known columns, delimiter, names) of the delimiter that recognises most columns.

    Cached: a folder of daily exports repeats one header thousands of times."""
    best: tuple[int, str, tuple[str, ...]] | None = None
    for delimiter in candidates:
        names = tuple(_split_header(header_line, delimiter))
        known = sum(1 for n in names if canonical_column(n))
        if best is None or known > best[0]:
            best = (known, delimiter, names)
    assert best is not None
    return best


def _split_best(header_line: str, forced: str | None) -> tuple[int, str, tuple[str, ...]]:
    best_split = _best_split if len(header_line) <= CACHED_HEADER_CHARS else _best_split.__wrapped__
    return best_split(header_line, (forced,) if forced else DELIMITERS)


def _delimiter_of(header_line: str, forced: str | None) -> str:
    return _split_best(header_line, forced)[1]


def _pick_delimiter(path: Path, header_line: str, forced: str | None) -> tuple[str, list[str]]:
    known, delimiter, split = _split_best(header_line, forced)
    names = list(split)
    if known == 0:
        shown = header_line[:80].strip()
        if forced:
            raise InputFileError(
                str(path),
                f"no known column in the header when split on {forced!r}: {shown!r}",
                "check --delimiter",
                line=1,
            )
        raise InputFileError(
            str(path),
            f"not a sales CSV export: the first line has none of the expected columns: {shown!r}",
            "expected a header such as 'Row ID,Order ID,Order Date,...'",
            line=1,
        )
    return delimiter, names


def _map_columns(path: Path, names: list[str]) -> tuple[dict[str, int], tuple[str, ...]]:
    columns: dict[str, int] = {}
    extras: list[str] = []
    for position, name in enumerate(names):
        canonical = canonical_column(name)
        if canonical is None:
            extras.append(name.strip())
        elif canonical in columns:
            raise InputFileError(str(path), f"column {name.strip()!r} appears twice in the header", line=1)
        else:
            columns[canonical] = position
    missing = [label for label, canon in CSV_FIELDS.items() if canon in REQUIRED_COLUMNS and canon not in columns]
    if missing:
        raise InputFileError(
            str(path),
            f"missing required column(s): {', '.join(missing)}",
            "the export needs the 24 fields of the regional layout (Market, Shipping Cost and Order Priority may be absent)",
            line=1,
        )
    return columns, tuple(extras)


def date_evidence(values: Iterable[str]) -> DateEvidence:
    """Separator, year width and which component exceeds 12, over sample values."""
    separator, year_digits, iso, day_first, month_first = None, None, False, False, False
    # distinct values in first-seen order: a daily export repeats a handful of dates
    for value in dict.fromkeys(values):
        if not value:
            continue
        match = _DMY.match(value)
        if match:
            first, sep, second, year = match.groups()
            separator = separator or sep
            year_digits = year_digits or len(year)
            day_first = day_first or int(first) > 12
            month_first = month_first or int(second) > 12
        elif _ISO.match(value):
            iso = True
    return DateEvidence(separator, year_digits, iso, day_first, month_first)


def decide_date_format(evidence: DateEvidence) -> str | None:
    """A DuckDB strptime format, or None while the evidence cannot decide."""
    if evidence.iso and not evidence.separator:
        return "%Y-%m-%d"
    if not evidence.separator:
        return None
    if evidence.day_first_seen and evidence.month_first_seen:
        return "inconsistent"
    year = "%Y" if evidence.year_digits == 4 else "%y"
    sep = evidence.separator
    if evidence.day_first_seen:
        return f"%d{sep}%m{sep}{year}"
    if evidence.month_first_seen:
        return f"%m{sep}%d{sep}{year}"
    return None


def sniff(path: Path, overrides: CsvOverrides = CsvOverrides(), deep: bool = False) -> CsvFile | None:
    """Read the head of ``path`` and describe its dialect; None for a header-only file
    (nothing but line ends after the header, however far they go).

    Raises InputFileError with one line (file, line, problem, fix) for a file that
    cannot be a regional export: empty, binary, undecodable, unknown columns.
    """
    limit, sample_rows = (DEEP_SNIFF_BYTES, DEEP_SAMPLE_ROWS) if deep else (SNIFF_BYTES, SAMPLE_ROWS)
    head = _read_head(path, overrides, limit)
    encoding = head.encoding
    header_end = _line_end(head.text)
    first_line = head.text if header_end < 0 else head.text[:header_end]
    if not first_line.strip():
        raise InputFileError(str(path), "the first line is empty, expected a header", line=1)
    delimiter, names = _pick_delimiter(path, first_line, overrides.delimiter)
    columns, extras = _map_columns(path, names)
    body = "" if header_end < 0 else head.text[header_end:]
    rows = _sample_rows(body, delimiter, sample_rows, head.whole_file)
    if not rows:
        if _header_only(path, head):
            return None
        # a first record longer than the look (quarantined later if over the size limit):
        # the sample comes from the records after it
        after, whole = _text_after_the_look(path, head, limit)
        rows = _sample_rows(after, delimiter, sample_rows, whole)

    def column_values(name: str) -> list[str]:
        position = columns.get(name)
        if position is None:
            return []
        return [r[position] for r in rows if len(r) > position]

    dates = date_evidence(column_values("order_date") + column_values("ship_date"))
    decimal = overrides.decimal or _detect_decimal(delimiter, column_values("sales") + column_values("profit"))
    return CsvFile(
        path=path,
        encoding=encoding,
        delimiter=delimiter,
        decimal=decimal,
        header=tuple(names),
        columns=columns,
        extra_columns=extras,
        dates=dates,
        date_format=overrides.date_format,
        data_rows_seen=len(rows),
    )


def sniff_all(paths: list[Path], overrides: CsvOverrides = CsvOverrides()) -> list[CsvFile | InputFileError | None]:
    """What :func:`sniff` says of each file, its error included (bronze runs this in a
    child process: see ``__main__`` below)."""
    answers: list[CsvFile | InputFileError | None] = []
    for path in paths:
        try:
            answers.append(sniff(path, overrides))
        except InputFileError as exc:
            answers.append(exc)
    return answers


def _detect_decimal(delimiter: str, numbers: list[str]) -> str:
    if delimiter == ",":
        return "."  # a decimal comma would need quoting in every value: not met in practice
    commas = sum(1 for v in numbers if _DECIMAL_COMMA.match(v))
    points = sum(1 for v in numbers if _DECIMAL_POINT.match(v))
    return "," if commas > points else "."


def undecided_sources(files: list[CsvFile], sources: list[str], known: dict[str, str]) -> set[str]:
    """Sources whose pooled date evidence (and earlier ingests) cannot decide the order."""
    pooled: dict[str, DateEvidence] = {}
    for f, source in zip(files, sources):
        if not f.date_format:
            pooled[source] = pooled.get(source, DateEvidence()).merge(f.dates)
    return {s for s, e in pooled.items() if decide_date_format(e) is None and s not in known}


def resolve_date_formats(files: list[CsvFile], sources: list[str], known: dict[str, str]) -> list[CsvFile]:
    """Give every file the date format of its source, pooled over the source's files.

    ``known`` holds formats decided for a source at an earlier ingest. A source whose
    pooled evidence cannot decide (all days <= 12) and has no known format is an error
    asking for --date-format; a contradiction (both orders seen) is an error too.
    """
    pooled: dict[str, DateEvidence] = {}
    for f, source in zip(files, sources):
        pooled[source] = pooled.get(source, DateEvidence()).merge(f.dates)
    decided: dict[str, str] = {}
    for source, evidence in pooled.items():
        fmt = decide_date_format(evidence)
        if fmt == "inconsistent":
            first = next(f for f, s in zip(files, sources) if s == source)
            raise InputFileError(
                str(first.path),
                f"dates of source {source!r} are day-first in some rows and month-first in others",
                "pass --date-format, e.g. --date-format %d-%m-%Y",
            )
        if fmt is None:
            fmt = known.get(source)
        if fmt is not None:
            decided[source] = fmt
    resolved = []
    for f, source in zip(files, sources):
        if f.date_format:
            resolved.append(f)
            continue
        fmt = decided.get(source)
        if fmt is None:
            problem = (
                f"cannot tell whether dates like {_example_date(f)} are day-first or month-first "
                f"(no day above 12 in source {source!r})"
            )
            if not f.data_rows_seen:
                problem = (
                    "no row to tell the date order from: "
                    f"its records are longer than the {DEEP_SNIFF_BYTES:,} bytes sampled"
                )
            raise InputFileError(str(f.path), problem, "pass --date-format %d/%m/%Y or --date-format %m/%d/%Y")
        resolved.append(replace(f, date_format=fmt))
    return resolved


def _example_date(f: CsvFile) -> str:
    sep = f.dates.separator or "/"
    year = "yyyy" if f.dates.year_digits == 4 else "yy"
    return f"'01{sep}02{sep}{year}'"


if __name__ == "__main__":
    # bronze.land_csv's sniffing child: pickled (paths, overrides) in, answers out
    import pickle
    import sys

    # from the package, not this __main__ copy: the answers' classes must unpickle there
    from saleslake.sources import csv as package_module  # noqa: PLW0406

    request_paths, request_overrides = pickle.loads(sys.stdin.buffer.read())
    sys.stdout.buffer.write(pickle.dumps(package_module.sniff_all(request_paths, request_overrides)))
