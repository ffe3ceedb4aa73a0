"""Hypothesis strategies: regional CSV exports in random dialects with random defects, each
record carrying the truth the pipeline must reproduce (CONTRACT §2 and §4).

A :class:`Scenario` is a few sources (one folder each), each with its own dialect
(delimiter, decimal mark, date order, year width, date separator) and a few files (each
with its own column layout, BOM, line ends and quoting). Every record knows what silver
must make of it: its position, its reason codes (or the malformed kind), its key and its
typed content, so the test can predict valid / quarantined / duplicate / corrected counts
per run, the quarantine rows per file and the content of silver.

The truth is the generator's, not a re-parse: a defect sets a field's text *and* the value
the contract says it has (``INVALID``, ``None`` for missing, a date, a Decimal); reasons
follow from those values by the rules of CONTRACT §4.

:class:`Options` adds inputs that once broke saleslake (issue 14), so they stay fixed; the
two that need huge files are off by default (dedicated tests cover them).
"""

from __future__ import annotations

import codecs
import random
import re
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

from saleslake.contract import CSV_FIELDS, OPTIONAL_CSV_COLUMNS, REQUIRED_FIELDS, canonical_column

BOM = "\ufeff"
INVALID = "<invalid>"  # the value of a field whose text the contract says cannot be typed
_BAD_BYTE = re.compile("[\udc80-\udcff]")  # a byte that is not UTF-8, as a surrogate escape
# saleslake.sources.csv: landing decodes a file's head (see ExportFile.sniffed_head_bytes);
# bytes that are not UTF-8 in it refuse the file, beyond it they quarantine their record.
SNIFF_HEAD_BYTES = 32 * 1024  # SNIFF_BYTES
DEEP_SNIFF_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class Options:
    """Inputs beyond the everyday ones, each of which once broke saleslake (issue 14). On
    by default but the two that need huge files (a dedicated test covers each: it would
    cost the fuzz loop too much); FUZZ_OPTIONS in test_csv_fuzz switches them."""

    # a first data row longer than the sniffer's 32 KB look (a 40,000-character product
    # name; a quarter of the files): the file was skipped as "header only" (item 1)
    huge_first_row: bool = True
    # a header of ~100,000 columns followed by data rows: "header only" too (item 1;
    # tests/slow/test_csv_wide_header.py)
    wide_header: bool = False
    # 70 empty lines after the header (a quarter of the files), more than the sniffer
    # samples (60): "header only", then an empty sample (decimal point assumed)
    many_leading_blank_lines: bool = True
    # a field of ~35 MB, neither in silver nor in quarantine (item 1;
    # tests/unit/silver/test_silver_csv.py)
    huge_field: bool = False
    # dates outside quality.min_date .. max_date (years 9999, 0000, 1899) passed silver and
    # broke gold; they are invalid_date:<field> (item 3)
    out_of_window_dates: bool = True
    # a source's files landed with the wrong --decimal and run first, then reparsed with
    # the right one (ingest csv --reparse, item 4; a quarter of the semicolon sources)
    wrong_decimal_first: bool = True


# -- dialects and layouts ---------------------------------------------------------------------


@dataclass(frozen=True)
class Dialect:
    """What one source's exports share (the date order is decided per source)."""

    delimiter: str
    decimal: str
    day_first: bool
    year_digits: int
    date_sep: str
    zero_pad: bool

    @property
    def date_format(self) -> str:
        """The format the sniffer decides (or the user passes) for this source."""
        year = "%Y" if self.year_digits == 4 else "%y"
        first, second = ("%d", "%m") if self.day_first else ("%m", "%d")
        return f"{first}{self.date_sep}{second}{self.date_sep}{year}"

    def render_date(self, d: date) -> str:
        day, month = (f"{d.day:02d}", f"{d.month:02d}") if self.zero_pad else (str(d.day), str(d.month))
        year = f"{d.year:04d}" if self.year_digits == 4 else f"{d.year % 100:02d}"
        first, second = (day, month) if self.day_first else (month, day)
        return f"{first}{self.date_sep}{second}{self.date_sep}{year}"

    def render_decimal(self, value: Decimal) -> str:
        text = f"{value:f}"
        return text.replace(".", ",") if self.decimal == "," else text


@st.composite
def dialects(draw) -> Dialect:
    delimiter = draw(st.sampled_from([",", ";"]))
    # a decimal comma with a comma delimiter would need quoting in every value: not met in
    # practice, and detection assumes a decimal point there (sources/csv._detect_decimal)
    decimal = "." if delimiter == "," else draw(st.sampled_from([".", ","]))
    return Dialect(
        delimiter=delimiter,
        decimal=decimal,
        day_first=draw(st.booleans()),
        year_digits=draw(st.sampled_from([4, 2])),
        date_sep=draw(st.sampled_from(["-", "/"])),
        zero_pad=draw(st.booleans()),
    )


# Header spellings: canonical labels matched case-, space-, dash- and underscore-insensitively.
def _spellings(label: str) -> list[str]:
    return [label, label.lower(), label.upper(), label.replace(" ", "_").replace("-", "_"), label.replace(" ", "-")]


ALIASES = {"country": "Country/Region", "state": "State/Province"}
EXTRA_LABELS = ["Sales Rep", "Notes", "Promo Code", "Warehouse", "Notes, internal", "Tax ID"]
assert all(canonical_column(label) is None for label in EXTRA_LABELS)


@dataclass(frozen=True)
class Layout:
    """One file's header: canonical names (or ``+label`` for an extra column) in file order."""

    columns: tuple[str, ...]
    labels: tuple[str, ...]
    bom: bool
    line_end: str
    quote_all: bool

    def has(self, name: str) -> bool:
        return name in self.columns


@st.composite
def layouts(draw, options: Options) -> Layout:
    names = [n for n in CSV_FIELDS.values() if n not in OPTIONAL_CSV_COLUMNS or draw(st.booleans())]
    extras = draw(st.lists(st.sampled_from(EXTRA_LABELS), max_size=2, unique=True))
    columns = names + [f"+{label}" for label in extras]
    if draw(st.booleans()):
        columns = draw(st.permutations(columns))
    if options.wide_header:
        # ~100,000 columns; the data rows carry them all. Appended, not
        # permuted: a permutation that large exhausts Hypothesis's budget for one example.
        columns = [*columns, *(f"+Extra {i}" for i in range(100_000))]
    labels = []
    label_of = {canon: label for label, canon in CSV_FIELDS.items()}
    for column in columns:
        if column.startswith("+"):
            labels.append(column[1:])
        elif column in ALIASES and draw(st.booleans()):
            labels.append(ALIASES[column])
        else:
            labels.append(draw(st.sampled_from(_spellings(label_of[column]))))
    return Layout(
        columns=tuple(columns),
        labels=tuple(labels),
        bom=draw(st.booleans()),
        line_end=draw(st.sampled_from(["\n", "\r\n", "\n", "\r\n", "\r"])),
        quote_all=draw(st.integers(0, 4)) == 0,
    )


# -- records ---------------------------------------------------------------------------------

TEXT_WORDS = ["Claire Gute", "Darrin Van Huff", "Sean O'Donnell", "Zoë Müller", "Renée Dubois", "José Álvarez"]
CITIES = ["Henderson", "Los Angeles", "Köln", "São Paulo", "Zürich", "Lyon", "東京"]
PRODUCTS = ["Bush Somerset Bookcase", "Hon Deluxe Chair", 'Eldon 10" Tray', "Xerox 1967", "Avery Binder, 1 inch"]
DECORATIONS = [", large", "; small", ' "best"', '""', "\n2nd line", "\r\n2nd line", " é", " 😀", "  "]
SEGMENTS = ["Consumer", "Corporate", "Home Office"]
SHIP_MODES = ["Standard Class", "Second Class", "First Class", "Same Day"]
PRIORITIES = ["Low", "Medium", "High", "Critical"]
COUNTRIES = [
    ("United States", "Kentucky", "US", "South"),
    ("Germany", "Berlin", "EU", "Central"),
    ("France", "Île-de-France", "EU", "Central"),
]
CATEGORIES = [("Furniture", "Chairs"), ("Office Supplies", "Paper"), ("Technology", "Phones")]
TEXT_FIELDS = ("customer_name", "city", "product_name")  # where decorations and stray bytes go
DATE_FIELDS = ("order_date", "ship_date")
NUMBER_FIELDS = ("sales", "quantity", "discount", "profit", "shipping_cost")
TRIMMED = {"order_id", "line_id", "customer_id", "product_id", *DATE_FIELDS, *NUMBER_FIELDS}
# silver's row_hash columns a CSV line can set (dedup: equal content = exact repeat)
CONTENT_FIELDS = (
    "order_date", "ship_date", "ship_mode", "order_priority", "customer_id", "customer_name", "segment", "city",
    "state", "country", "postal_code", "market", "region", "product_id", "product_name", "category",
    "sub_category", "quantity", "sales", "discount", "profit", "shipping_cost",
)  # fmt: skip

# Field defects (CONTRACT §4 reason codes, plus harmless variants that must stay valid).
FIELD_DEFECTS = (
    *(f"missing:{name}" for name in REQUIRED_FIELDS),
    "invalid_date:order_date",
    "invalid_date:ship_date",
    *(f"invalid_number:{name}" for name in NUMBER_FIELDS),
    "fractional_quantity",  # "2.5" items: not an int64 (CONTRACT §3), invalid_number:quantity
    "non_positive_quantity",
    "non_positive_sales",
    "discount_out_of_range",
    "ship_before_order",
    "not_shipped",  # empty ship date: valid, flagged
    "padded",  # blanks around keys, dates and numbers: trimmed, valid
    "outlier",  # sales above 10,000: flagged, kept
)
# Record-level defects: the first group makes the record unsplittable (malformed_row).
MALFORMED_DEFECTS = ("too_many_columns", "missing_column", "quoted_then_junk", "whitespace_line")
RECORD_DEFECTS = (
    *MALFORMED_DEFECTS,
    "trailing_delimiter",  # "...,High,": an empty field past the header's, as spreadsheets export
    "mid_field_quote",  # C"1 in an unquoted field: kept literally, valid
    "bad_byte",  # a cp1252 byte in a text field: not UTF-8
    "other_line_end",  # this record ends with CRLF in an LF file (or LF in a CRLF one)
    "lone_cr",  # this record ends with a lone CR
)
LAST_RECORD_DEFECTS = ("truncated", "unclosed_quote", "no_final_newline")


@dataclass
class Record:
    """One record as written and what silver must make of it."""

    texts: dict[str, str]  # canonical name -> text (bad bytes as surrogate escapes)
    values: dict[str, Any]  # canonical name -> typed value, None (null) or INVALID
    extras: dict[str, str]
    defects: tuple[str, ...] = ()
    malformed: str | None = None  # expected malformed_row kind ("" when not predictable)
    line: str = ""  # as written, without its line end
    terminator: str | None = None  # None: the file's line end
    position: str = ""  # silver's source_position ("record:N" or "line:N"), set by the file

    @property
    def reasons(self) -> tuple[str, ...]:
        """CONTRACT §4 reason codes of a splittable record (sorted), from its values."""
        v = self.values
        reasons = {f"missing_required:{name}" for name in REQUIRED_FIELDS if v[name] is None}
        reasons |= {f"invalid_date:{name}" for name in DATE_FIELDS if v[name] == INVALID}
        reasons |= {f"invalid_number:{name}" for name in NUMBER_FIELDS if v[name] == INVALID}
        typed = {name: value for name, value in v.items() if value is not None and value != INVALID}
        if "quantity" in typed and typed["quantity"] <= 0:
            reasons.add("non_positive_quantity")
        if "sales" in typed and typed["sales"] <= 0:
            reasons.add("non_positive_sales")
        if "discount" in typed and not 0 <= typed["discount"] <= 1:
            reasons.add("discount_out_of_range")
        if "order_date" in typed and "ship_date" in typed and typed["ship_date"] < typed["order_date"]:
            reasons.add("ship_before_order")
        return tuple(sorted(reasons))


def _decorate(rng: random.Random, text: str, trimmed: bool) -> str:
    decoration = rng.choice(DECORATIONS)
    if decoration.strip() == "" and trimmed:
        return text
    return text + decoration if rng.random() < 0.7 else decoration.strip() + " " + text


def _plain_record(rng: random.Random, dialect: Dialect, ids: dict, order_day: range, day_first_anchor: bool) -> Record:
    """A valid record with fresh keys and plain texts."""
    ids["line"] += 1
    if rng.random() < 0.6 or not ids.get("order"):
        ids["order"] = f"{ids['prefix']}-{rng.randint(1995, 2030)}-{rng.randint(100000, 999999)}"
    year = rng.randint(1995, 2030)
    month = rng.randint(1, 12)
    day = rng.randint(13, 28) if day_first_anchor else rng.choice(order_day)
    order = date(year, month, day)
    ship = order + timedelta(days=rng.randint(0, 4))
    country, state, market, region = rng.choice(COUNTRIES)
    category, sub_category = rng.choice(CATEGORIES)
    values: dict[str, Any] = {
        "line_id": str(ids["line"]),
        "order_id": ids["order"],
        "order_date": order,
        "ship_date": ship,
        "ship_mode": rng.choice(SHIP_MODES),
        "customer_id": f"CG-{rng.randint(10000, 10100)}",
        "customer_name": rng.choice(TEXT_WORDS),
        "segment": rng.choice(SEGMENTS),
        "city": rng.choice(CITIES),
        "state": state,
        "country": country,
        "postal_code": f"{rng.randint(0, 99999):05d}",
        "market": market,
        "region": region,
        "product_id": f"FUR-BO-{rng.randint(10000000, 10000050)}",
        "category": category,
        "sub_category": sub_category,
        "product_name": rng.choice(PRODUCTS),
        "sales": Decimal(rng.randint(50, 500_000)) / 100,
        "quantity": rng.randint(1, 14),
        "discount": rng.choice([Decimal("0"), Decimal("0.1"), Decimal("0.2"), Decimal("0.45"), Decimal("1")]),
        "profit": Decimal(rng.randint(-100_000, 100_000)) / 100,
        "shipping_cost": Decimal(rng.randint(0, 50_000)) / 100,
        "order_priority": rng.choice(PRIORITIES),
    }
    return Record(texts=_texts(values, dialect), values=values, extras={})


def _texts(values: dict[str, Any], dialect: Dialect) -> dict[str, str]:
    texts = {}
    for name, value in values.items():
        if value is None:
            texts[name] = ""
        elif isinstance(value, date):
            texts[name] = dialect.render_date(value)
        elif isinstance(value, Decimal):
            texts[name] = dialect.render_decimal(value)
        else:
            texts[name] = str(value)
    return texts


def _set(record: Record, name: str, text: str, value: Any) -> None:
    record.texts[name] = text
    record.values[name] = value


def _apply_field_defect(rng: random.Random, record: Record, defect: str, dialect: Dialect, ambiguous: bool) -> None:
    v = record.values
    if defect.startswith("missing:"):
        _set(record, defect.split(":")[1], rng.choice(["", "  "]), None)
    elif defect.startswith("invalid_date:"):
        name = defect.split(":")[1]
        texts = ["n/a", "TBD", "soon", f"00{dialect.date_sep}00{dialect.date_sep}00", "2021-13-45"]
        if not ambiguous:  # an impossible day in the source's own order (a day > 12 would decide it)
            day, month = rng.choice([("30", "02"), ("31", "04"), ("31", "11")])
            year = "2021" if dialect.year_digits == 4 else "21"
            first, second = (day, month) if dialect.day_first else (month, day)
            texts.append(f"{first}{dialect.date_sep}{second}{dialect.date_sep}{year}")
        _set(record, name, rng.choice(texts), INVALID)
    elif defect.startswith("invalid_number:"):
        name = defect.split(":")[1]
        texts = ["n/a", "12.3x", "--5", "$12.50", "1 000", "abc"]
        if name not in ("sales", "profit"):  # the sniffer votes on sales and profit: no wrong mark there
            texts.append("0.25" if dialect.decimal == "," else "0,25")
        if dialect.decimal == ",":
            texts.append("1.234,56")
        _set(record, name, rng.choice(texts), INVALID)
    elif defect == "fractional_quantity":
        _set(record, "quantity", rng.choice(["2.5", "1.5", "0.5"]).replace(".", dialect.decimal), INVALID)
    elif defect == "non_positive_quantity":
        quantity = rng.choice([0, -1, -3])
        _set(record, "quantity", str(quantity), quantity)
    elif defect == "non_positive_sales":
        sales = rng.choice([Decimal("0.00"), Decimal("-25.50")])
        _set(record, "sales", dialect.render_decimal(sales), sales)
    elif defect == "discount_out_of_range":
        discount = rng.choice([Decimal("1.5"), Decimal("-0.1"), Decimal("2")])
        _set(record, "discount", dialect.render_decimal(discount), discount)
    elif defect == "ship_before_order" and isinstance(v["order_date"], date):
        order = v["order_date"]
        if ambiguous:  # keep every day <= 12: the order's day is 2..8 there
            order = order.replace(day=max(order.day, 2))
            _set(record, "order_date", dialect.render_date(order), order)
        ship = order - timedelta(days=1)
        _set(record, "ship_date", dialect.render_date(ship), ship)
    elif defect == "not_shipped":
        _set(record, "ship_date", "", None)
    elif defect == "padded":
        for name in ("order_id", "customer_id", "sales", "order_date"):
            if record.texts[name]:
                record.texts[name] = f" {record.texts[name]} "
    elif defect == "outlier":
        sales = Decimal("12345.67")
        _set(record, "sales", dialect.render_decimal(sales), sales)
    elif defect == "decorated":
        for name in TEXT_FIELDS:
            if rng.random() < 0.6 and v[name] is not None:
                text = _decorate(rng, record.texts[name], name in TRIMMED)
                _set(record, name, text, text)


def _render_field(text: str, delimiter: str, quote_all: bool) -> str:
    if quote_all or any(c in text for c in (delimiter, '"', "\n", "\r")):
        return '"' + text.replace('"', '""') + '"'
    return text


def _render(record: Record, layout: Layout, delimiter: str, raw: dict[str, str] | None = None) -> list[str]:
    """The record's fields in ``layout`` order, quoted as needed; ``raw`` fields go verbatim."""
    raw = raw or {}
    fields = []
    for column in layout.columns:
        if column in raw:
            fields.append(raw[column])
        elif column.startswith("+"):
            fields.append(_render_field(record.extras.get(column, ""), delimiter, layout.quote_all))
        else:
            fields.append(_render_field(record.texts[column], delimiter, layout.quote_all))
    return fields


def finish(record: Record, layout: Layout, dialect: Dialect, rng: random.Random, structural: str | None) -> Record:
    """Lay ``record`` out in ``layout`` (absent columns are null) and apply a record defect."""
    for name in CSV_FIELDS.values():
        if not layout.has(name):  # null here, and in a repeat of it in another layout
            _set(record, name, "", None)
    for column in layout.columns:
        if column.startswith("+Extra "):  # Options.wide_header: empty (a draw each would exhaust Hypothesis)
            record.extras.setdefault(column, "")
        elif column.startswith("+") and column not in record.extras:
            record.extras[column] = rng.choice(["", "Bob", "x, y", 'say "hi"'])
    delimiter = dialect.delimiter
    raw: dict[str, str] = {}
    plain_text = [c for c in ("customer_name", "city", "segment", "ship_mode") if layout.has(c)]
    if structural in ("mid_field_quote", "quoted_then_junk", "unclosed_quote") and plain_text:
        name = rng.choice(plain_text)
        word = rng.choice(["Ann", "Lee", "Bo"])
        if structural == "mid_field_quote":
            raw[name] = f'{word}"{word}'
            _set(record, name, raw[name], raw[name])
        elif structural == "quoted_then_junk":
            raw[name] = f'"{word}"x'
        else:  # the quote never closes: no other quote may follow it in the file
            raw[name] = f'"{word}'
            position = layout.columns.index(name)
            for column in layout.columns[position + 1 :]:
                if column.startswith("+"):
                    record.extras[column] = "x"
                elif record.texts[column]:
                    record.texts[column] = "x"
            layout = Layout(layout.columns, layout.labels, layout.bom, layout.line_end, False)
    elif structural in ("mid_field_quote", "quoted_then_junk", "unclosed_quote"):
        structural = None
    if structural == "bad_byte":
        name = rng.choice([n for n in TEXT_FIELDS if layout.has(n)])
        text = record.texts[name] + rng.choice(["\udce9", "\udc96"])  # é and en dash in cp1252
        _set(record, name, text, text)
    fields = _render(record, layout, delimiter, raw)
    if structural == "trailing_delimiter":
        fields += [""] * rng.randint(1, 2)  # empty fields past the header's: read as the row, no data lost
    elif structural == "too_many_columns":
        fields += ["extra", "fields"][: rng.randint(1, 2)]
        record.malformed = "too_many_columns"
    elif structural == "missing_column":
        del fields[rng.randrange(len(fields))]
        record.malformed = "missing_columns"
    elif structural == "quoted_then_junk" or structural == "unclosed_quote":
        record.malformed = ""
    elif structural == "whitespace_line":
        fields = [" " * rng.randint(1, 3)]
        record.malformed = "missing_columns"
    elif structural == "truncated":
        # cut inside an unquoted field before the last one: fewer fields, never empty
        candidates = [i for i, f in enumerate(fields[:-1]) if not f.startswith('"')]
        if candidates:
            k = rng.choice(candidates)
            cut = rng.randint(1, max(1, len(fields[k]))) if k == 0 else rng.randint(0, len(fields[k]))
            head = delimiter.join(fields[:k])
            fields = [(head + delimiter if k else "") + fields[k][:cut]]
            record.malformed = "missing_columns" if fields[0].strip() else None
            record.terminator = ""
        if not record.malformed:
            structural = None
            fields = _render(record, layout, delimiter, raw)
    if structural in ("truncated", "no_final_newline"):
        record.terminator = ""
    elif structural == "other_line_end":
        record.terminator = "\n" if layout.line_end == "\r\n" else "\r\n"
    elif structural == "lone_cr":
        record.terminator = "\r"
    record.line = delimiter.join(fields)
    record.defects += (structural,) if structural else ()
    return record


# -- files and sources ------------------------------------------------------------------------


@dataclass
class ExportFile:
    name: str
    layout: Layout
    items: list[Record | None]  # None: an empty line
    delimiter: str
    _content: bytes | None = None
    _refused: bool | None = None  # refused_as_not_utf8, once the content is final

    @property
    def records(self) -> list[Record]:
        return [r for r in self.items if r is not None]

    @property
    def has_bad_bytes(self) -> bool:
        return any(_BAD_BYTE.search(r.line) for r in self.records)

    @property
    def refused_as_not_utf8(self) -> bool:
        """Bytes that are not UTF-8 in the head landing decodes, BOM or not: the file is
        refused ("not valid UTF-8 ... pass --encoding"). Beyond the head, the reader
        rejects their record (malformed_row:invalid_encoding)."""
        if self._refused is not None:
            return self._refused
        refused = self.has_bad_bytes and _has_invalid_utf8(self.content()[: self.sniffed_head_bytes()])
        if self._content is not None:  # final: the model asks for it for every field
            self._refused = refused
        return refused

    def sniffed_head_bytes(self, size: int | None = None) -> int:
        """How many bytes landing decodes to sniff the file (README: the first line and at
        least 32 KB after it), as saleslake.sources.csv._read_head reads: the first line,
        SNIFF_HEAD_BYTES after it, then twice as much while no complete record follows the
        first line, up to DEEP_SNIFF_BYTES after it; the whole file when shorter. ``size``:
        as if the file were that long."""
        data = self.content()
        size = len(data) if size is None else size
        header_bytes = re.search(rb"[\r\n]", data).start()  # labels hold no line end
        header_chars = header_bytes - (len(BOM.encode()) if self.layout.bom else 0)  # ASCII labels
        second = self._second_record_seen_at()
        wanted = SNIFF_HEAD_BYTES
        while True:
            if size < wanted:
                return size
            if wanted <= header_bytes:  # the first line is not complete yet
                wanted *= 2
            elif wanted < header_chars + SNIFF_HEAD_BYTES:
                wanted = header_chars + SNIFF_HEAD_BYTES
            elif wanted >= header_chars + DEEP_SNIFF_BYTES or (second is not None and wanted >= second):
                return wanted
            else:
                wanted = min(2 * wanted, header_chars + DEEP_SNIFF_BYTES)

    def _second_record_seen_at(self) -> int | None:
        """The bytes a head needs to show that the first record is complete: up to the
        first character of the second (empty lines are no records)."""
        offset = len(self.content().split(self.layout.line_end.encode(), 1)[0] + self.layout.line_end.encode())
        seen = 0
        for item in self.items:
            if item is None:
                offset += len(self.layout.line_end)
                continue
            seen += 1
            if seen == 2:
                return offset + len(item.line[:1].encode("utf-8", "surrogateescape"))
            terminator = self.layout.line_end if item.terminator is None else item.terminator
            offset += len((item.line + terminator).encode("utf-8", "surrogateescape"))
        return None

    @property
    def mixed_line_ends(self) -> bool:
        """CRs that are neither all of the file's line ends nor each half of a CR LF (quoted
        fields included): silver reads such a file with every CR LF and lone CR as LF."""
        data = self.content()
        cr, lf, crlf = data.count(b"\r"), data.count(b"\n"), data.count(b"\r\n")
        return cr > 0 and lf > 0 and not cr == lf == crlf

    def content(self) -> bytes:
        """The file's bytes (computed once the file is complete: see :func:`export_files`)."""
        return self._content if self._content is not None else self._encode()

    def freeze(self) -> None:
        self._content = self._encode()

    def _encode(self) -> bytes:
        header = self.delimiter.join(
            _render_field(label, self.delimiter, self.layout.quote_all) for label in self.layout.labels
        )
        parts = [BOM if self.layout.bom else "", header, self.layout.line_end]
        for item in self.items:
            if item is None:
                parts.append(self.layout.line_end)
            else:
                parts += [item.line, self.layout.line_end if item.terminator is None else item.terminator]
        return "".join(parts).encode("utf-8", "surrogateescape")

    def assign_positions(self) -> None:
        """silver's source_position of each record: ``record:N`` counts the records the
        reader splits, ``line:N`` (malformed) counts reader lines: the header, empty lines
        and records (a record spanning lines in quotes is one)."""
        unit, records = 1, 0
        for item in self.items:
            unit += 1
            if item is None:
                continue
            if item.malformed is not None or self.malformed_by_encoding(item):
                item.position = f"line:{unit}"
            else:
                records += 1
                item.position = f"record:{records}"

    def malformed_by_encoding(self, record: Record) -> bool:
        """A record with bytes that are not UTF-8 in a file read as UTF-8 (bytes beyond
        the sniffed head) is rejected by the reader: malformed_row."""
        return self.effective_encoding == "utf-8" and _BAD_BYTE.search(record.line) is not None

    @property
    def effective_encoding(self) -> str:
        """The encoding silver reads: a file refused as not UTF-8 is landed again with
        ``--encoding latin-1``."""
        return "latin-1" if self.refused_as_not_utf8 else "utf-8"

    def typed_text(self, text: str | None) -> str | None:
        """A text field as silver holds it."""
        if text is None:
            return None
        if self.effective_encoding == "latin-1":
            text = text.encode("utf-8", "surrogateescape").decode("latin-1")
        if self.mixed_line_ends:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        return text

    def is_rejected(self, record: Record) -> bool:
        return self.malformed_by_encoding(record) or record.malformed is not None or bool(record.reasons)

    def expected_reasons(self, record: Record) -> tuple[str, ...] | str:
        """Sorted reason codes of a record, or the malformed kind ("" when not predictable)."""
        if self.malformed_by_encoding(record):
            return "invalid_encoding"
        if record.malformed is not None:
            return record.malformed
        return record.reasons

    def content_of(self, record: Record) -> tuple:
        """The typed business content of a valid record (what silver's row_hash covers)."""
        values = []
        for name in CONTENT_FIELDS:
            value = record.values[name]
            if isinstance(value, str):
                value = value.strip() if name in TRIMMED else value
                value = self.typed_text(value) if value != "" else None
            values.append(value)
        return tuple(values)


def _has_invalid_utf8(head: bytes) -> bool:
    """As landing decodes a file's head: a character cut at its end is not an error."""
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return True
    return False


@dataclass
class Source:
    name: str
    dialect: Dialect
    ambiguous: bool  # no day above 12 anywhere: landing asks for --date-format
    files: list[ExportFile]
    first_delivery: int  # files[:first_delivery] land and run first, the rest in a second run
    wrong_decimal_first: bool = False  # Options.wrong_decimal_first

    @property
    def deliveries(self) -> list[list[ExportFile]]:
        return [self.files[: self.first_delivery], self.files[self.first_delivery :]]


class Scenario:
    """Sources landed and run together. Not a dataclass: Hypothesis would print every field
    of every record as the falsifying example; the test notes :meth:`describe` instead."""

    def __init__(self, sources: list[Source]):
        self.sources = sources

    @property
    def record_count(self) -> int:
        return sum(len(f.records) for source in self.sources for f in source.files)

    def __repr__(self) -> str:
        return f"Scenario({', '.join(f'{s.name}: {len(s.files)} file(s)' for s in self.sources)})"

    def describe(self) -> str:
        """A reproducible description for the CI log: every file's bytes."""
        lines = []
        for source in self.sources:
            lines.append(
                f"source {source.name}: {source.dialect} ambiguous={source.ambiguous} "
                f"first_delivery={source.first_delivery} wrong_decimal_first={source.wrong_decimal_first}"
            )
            for f in source.files:
                defects = [(r.position, r.defects) for r in f.records if r.defects]
                lines.append(f"  file {f.name}: {len(f.records)} records, layout={f.layout!r}, defects={defects}")
                lines.append(f"    bytes={f.content()[:20000]!r}")
        return "\n".join(lines)


@st.composite
def export_files(
    draw, name: str, dialect: Dialect, ambiguous: bool, ids: dict, earlier: list[Record], options: Options
):
    """One file of a source; ``earlier``: the source's records so far (for repeats and
    corrections), extended with this file's."""
    layout = draw(layouts(options))
    rng = draw(st.randoms(use_true_random=False))
    order_days = range(1, 9) if ambiguous else range(1, 29)
    count = draw(st.integers(0, 25) | st.integers(1, 4))
    items: list[Record | None] = []
    if options.many_leading_blank_lines and draw(st.integers(0, 3)) == 0:
        items += [None] * 70
    huge_first_row = options.huge_first_row and draw(st.integers(0, 3)) == 0
    own: list[Record] = []
    for index in range(count):
        last = index == count - 1
        kind = "fresh" if index == 0 else draw(st.sampled_from(["fresh"] * 6 + ["repeat", "correction"]))
        previous = [r for r in earlier + own if r.malformed is None and "bad_byte" not in r.defects]
        if kind == "repeat" and previous:
            source_record = rng.choice(previous)
            record = Record(dict(source_record.texts), dict(source_record.values), dict(source_record.extras))
            record.defects = ("repeat",)
            if rng.random() < 0.3:
                record.extras = {}  # extra columns are not content: still an exact repeat
        elif kind == "correction" and previous:
            source_record = rng.choice(previous)
            record = Record(dict(source_record.texts), dict(source_record.values), {})
            fresh = _plain_record(rng, dialect, dict(ids), order_days, False)
            for changed in rng.sample(["quantity", "customer_name", "order_date", "ship_mode"], rng.randint(1, 2)):
                fields = ("order_date", "ship_date") if changed == "order_date" else (changed,)
                for f in fields:
                    _set(record, f, fresh.texts[f], fresh.values[f])
            record.defects = ("correction",)
        else:
            record = _plain_record(rng, dialect, ids, order_days, index == 0 and not ambiguous)
        anchor = index == 0
        structural = None
        if not anchor:
            # a clean first row: it decides the date order and the decimal mark of the file
            field_defects = draw(st.lists(st.sampled_from(FIELD_DEFECTS), max_size=3))
            if draw(st.integers(0, 2)) > 0:
                field_defects = []
            # about one record in seven has a record defect, each kind as likely
            structural = draw(st.sampled_from([None] * 50 + list(RECORD_DEFECTS)))
            if last:
                structural = draw(st.sampled_from([structural, structural, *LAST_RECORD_DEFECTS]))
            if structural in (*MALFORMED_DEFECTS, "truncated", "unclosed_quote"):
                field_defects = []  # malformed: field defects would not show (and could fool the sniffer)
            if options.out_of_window_dates and dialect.year_digits == 4 and draw(st.integers(0, 5)) == 0:
                date_field = draw(st.sampled_from(DATE_FIELDS))
                outside = [("01", "01", "0000")]
                if not ambiguous:  # a day above 12 would decide the date order
                    outside += [("31", "12", "9999"), ("15", "06", "1899")]
                day, month, year = draw(st.sampled_from(outside))
                first, second = (day, month) if dialect.day_first else (month, day)
                _set(record, date_field, f"{first}{dialect.date_sep}{second}{dialect.date_sep}{year}", INVALID)
                record.defects += ("out_of_window_date",)
            for defect in field_defects:
                _apply_field_defect(rng, record, defect, dialect, ambiguous)
            record.defects += tuple(field_defects)
        if rng.random() < 0.3:
            _apply_field_defect(rng, record, "decorated", dialect, ambiguous)
            record.defects += ("decorated",)
        if anchor and huge_first_row:
            record.texts["product_name"] = record.values["product_name"] = "P" * 40_000
            record.defects += ("huge_first_row",)
        if options.huge_field and last and index > 0:
            record.texts["product_name"] = record.values["product_name"] = "H" * (35 << 20)
            record.defects += ("huge_field",)
        if not anchor and draw(st.integers(0, 5)) == 0 and _may_follow(items[-1], layout):
            items.append(None)  # empty lines between records
        items.append(finish(record, layout, dialect, rng, structural))
        own.append(record)
    if count and draw(st.integers(0, 4)) == 0 and _may_follow(items[-1], layout):
        items.append(None)  # a trailing empty line
    export = ExportFile(name, layout, items, dialect.delimiter)
    if count > 1 and draw(st.integers(0, 12)) == 0:
        _push_bad_byte_beyond_head(export, rng, dialect, ids, order_days)
    export.freeze()
    export.assign_positions()
    earlier.extend(own)
    return export


def _may_follow(item: Record | None, layout: Layout) -> bool:
    """Whether an empty line may follow ``item``: not a record without a line end (the
    empty line's end would end it), nor a lone CR in a file of LF ends (CR + LF is one
    line end: no empty line)."""
    if item is None:
        return True
    return item.terminator != "" and not (item.terminator == "\r" and layout.line_end == "\n")


def _push_bad_byte_beyond_head(export: ExportFile, rng: random.Random, dialect: Dialect, ids: dict, days) -> None:
    """Fill the file with valid records until a bad byte in its last record lies beyond the
    sniffed head: it lands, and the reader rejects that record (malformed_row)."""
    last = export.items[-1]
    if last is None or last.malformed is not None or last.terminator == "":
        return
    if export.refused_as_not_utf8:
        return  # refused as a whole already

    def filler() -> Record:
        return finish(_plain_record(rng, dialect, ids, days, False), export.layout, dialect, rng, None)

    export.items[-1:-1] = [filler()]  # the second record, when the last one was
    head = export.sniffed_head_bytes(size=1 << 40)
    size = len(export.content())
    fillers = []
    while size < head + 4096:
        fillers.append(filler())
        size += len(fillers[-1].line.encode()) + len(export.layout.line_end)
    export.items[-1:-1] = fillers
    export.items.append(finish(_plain_record(rng, dialect, ids, days, False), export.layout, dialect, rng, "bad_byte"))


@st.composite
def sources(draw, name: str, options: Options, ambiguous: bool | None = None) -> Source:
    dialect = draw(dialects())
    ambiguous = draw(st.integers(0, 4)) == 0 if ambiguous is None else ambiguous
    ids = {"prefix": name.upper()[:2], "line": 0}
    earlier: list[Record] = []
    files = [
        draw(export_files(f"{name}-{i + 1}.csv", dialect, ambiguous, ids, earlier, options))
        for i in range(draw(st.integers(1, 3)))
    ]
    if draw(st.integers(0, 5)) == 0:
        # the same export delivered twice: content-addressed landing skips the copy
        files.append(
            ExportFile(f"{name}-copy.csv", files[0].layout, files[0].items, dialect.delimiter, files[0].content())
        )
    return Source(
        name=name,
        dialect=dialect,
        ambiguous=ambiguous,
        files=files,
        first_delivery=draw(st.integers(1, len(files))),
        wrong_decimal_first=options.wrong_decimal_first and dialect.delimiter == ";" and draw(st.integers(0, 3)) == 0,
    )


@st.composite
def scenarios(draw, options: Options = Options(), max_sources: int = 3, require_ambiguous: bool = False) -> Scenario:
    """1..max_sources sources; ``require_ambiguous``: the first one's date order cannot be
    decided (landing must ask for --date-format)."""
    names = ["emea", "us", "apac"][: draw(st.integers(1, max_sources))]
    return Scenario(
        [draw(sources(name, options, True if require_ambiguous and i == 0 else None)) for i, name in enumerate(names)]
    )
