"""The sample catalogs (package data, ``saleslake/sample/data/*.toml``) and the output
they make, pinned byte for byte.

The digests were computed on main before the catalogs moved out of the code into package
data: moving them must not change one byte of what the CSV exporter, the point-of-sale
simulator or the OLTP shop generator produce for a seed. A deliberate change of a
generator's output (not of where its data lives) replaces the digest it breaks, saying so
in its commit.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from saleslake.sample import catalog, oltp
from saleslake.sample import csv_export as cx
from saleslake.sample import pos_events as pos

CSV_DIGEST = "fe8c0e842513869f17ca959ee37634cb3a4020d5de5d7eb073c2d65f48f44b70"
POS_DIGEST = "63360943121a80281cbd455ad19fe71256003b0a2d0418e1e26b375b6c204786"
POS_REFERENCE_DIGEST = "6ce0cdc268056865bb159aa50dccc7dd93000e16ca0d9ba32551e4d535862dbe"
OLTP_DIGEST = "b2526d9cb3e931d94249f4b2aef8ee25f4c47580c5f4d849fd5dc034bd29665b"
# repr of every catalog constant, by module and name (the data itself, not only its effect)
CATALOG_DIGESTS = {
    "saleslake.sample.csv_export.REGIONS": "4f7c0c47f52a6cf2a082245629e2824c8a42004a0764ae62bf707d2bdf2bc043",
    "saleslake.sample.csv_export._SUBCATEGORIES": "6a35996c0190e4536e6a948cd1faad2a914594b14cdafd3a7da2b6b15efaad97",
    "saleslake.sample.csv_export._BRANDS": "944479ccbd04bc0c8c26a2aca4bb9e84459d2a6557a35e2feba0f89c6f48e53e",
    "saleslake.sample.csv_export._NOUNS": "380dac9b3c51cc2ef2569bde9617279f1eaa5c569b06efa1b181b49efa30f5fc",
    "saleslake.sample.csv_export._VARIANTS": "a3dab4e6a368dcb4b4b296940389e3dc83281f0368c0a0c9daaa94ca26df4bfc",
    "saleslake.sample.csv_export._SIZES": "5823022d8b4f63baf096f7d01e2b7506c8e3b7e1e09b1afced249c81ec2e792e",
    "saleslake.sample.csv_export._FIRST_NAMES": "2f41a9109c04de9788b7cf9bf79bcecce5810e475a398c6965c8fba5b16990c7",
    "saleslake.sample.csv_export._LAST_NAMES": "dd99570a8b11bcbb564b704e966c0fd0240930525f0a772860b53382e4dc0147",
    "saleslake.sample.oltp._STREETS": "6a5343ee2d90b83efd429a53fea2094355b7493422a002da73539d0db51caf22",
    "saleslake.sample.oltp._STORE_SUFFIXES": "2bb1c979092e6c799935ec8985aeadacf77093924810b339acba3bafe3f143cd",
    "saleslake.sample.oltp._RENAMES": "76db1f09dfef515ad406418b6782ddc60d499a1c43b84543bcbaed295c75c07a",
    "saleslake.sample.pos_events.CURRENCY_BY_COUNTRY": "054a35ecc42e2b17f22e2a09dc17452224d62715e3c982f7deff941f5cf43d28",
    "saleslake.sample.pos_events._UTC_OFFSET": "dcb67e05380e325bdffdf45595d9272c5ff8c1a4e30f6c6c200011b6e5503d51",
    "saleslake.sample.pos_events._UTC_OFFSET_BY_CITY": "645bf17376641911281fcfe00551f11954c4d630698ac3207832389b38f2ffd5",
    "saleslake.sample.pos_events._UTC_OFFSET_BY_REGION": "8ac08e0a812384be3949882cba1c8d5bfe56743f284cbb6b5fe9cf478a50b642",
    "saleslake.sample.pos_events._STORE_SUFFIXES": "8e69f656b0858734bd0afeed5d82b5d26471d57867ef41a0c459a414251dea4e",
}

CATALOG_NAMES = {
    cx: ("REGIONS", "_SUBCATEGORIES", "_BRANDS", "_NOUNS", "_VARIANTS", "_SIZES", "_FIRST_NAMES", "_LAST_NAMES"),
    oltp: ("_STREETS", "_STORE_SUFFIXES", "_RENAMES"),
    pos: ("CURRENCY_BY_COUNTRY", "_UTC_OFFSET", "_UTC_OFFSET_BY_CITY", "_UTC_OFFSET_BY_REGION", "_STORE_SUFFIXES"),
}


def _sha(parts) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part if isinstance(part, bytes) else repr(part).encode())
        h.update(b"\x00")
    return h.hexdigest()


def test_csv_exports_are_byte_identical(tmp_path: Path) -> None:
    cx.generate_csv(tmp_path, rows=20_000, seed=42)
    files = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    assert len(files) > 13
    assert _sha(x for p in files for x in (p.relative_to(tmp_path).as_posix().encode(), p.read_bytes())) == CSV_DIGEST


def test_pos_events_and_reference_are_byte_identical() -> None:
    sim = pos.PosSimulator(seed=42, error_rate=0.05, fraud_rate=0.03, start_time=datetime(2026, 3, 2, tzinfo=UTC))
    messages, _ = sim.generate(10_000)
    assert _sha(x for key, value in messages for x in (key, value)) == POS_DIGEST
    stores, products = pos.reference_tables()
    assert _sha([stores.to_pylist(), products.to_pylist()]) == POS_REFERENCE_DIGEST


def test_oltp_fill_rows_are_identical() -> None:
    world = oltp._World(seed=42, orders=2_000)
    chunks = list(world.order_chunks())
    assert _sha([world.store_rows(), world.customer_rows(), world.product_rows(), chunks]) == OLTP_DIGEST


def test_catalog_constants_are_unchanged() -> None:
    seen = {
        f"{mod.__name__}.{name}": _sha([getattr(mod, name)]) for mod, names in CATALOG_NAMES.items() for name in names
    }
    assert seen == CATALOG_DIGESTS


def test_every_catalog_file_is_named_and_loads() -> None:
    shipped = {p.stem for p in Path(catalog.__file__).with_name("data").glob("*")}
    assert shipped == set(catalog.NAMES)
    assert all(catalog.load(name) for name in catalog.NAMES)
    with pytest.raises(ValueError, match="no sample catalog 'nope'"):
        catalog.load("nope")


def test_a_country_code_means_one_country_with_a_currency_and_an_offset() -> None:
    seen: dict[str, tuple[str, str]] = {}
    for spec in cx.REGIONS.values():
        for country in spec.countries:
            assert seen.setdefault(country.code, (country.name, country.market)) == (country.name, country.market)
            assert country.cities
    world = catalog.load("pos")
    assert set(seen) == set(world["currency_by_country"]) == set(world["utc_offset"]["by_country"])
