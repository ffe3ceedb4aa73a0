"""Helpers shared by tests (importable as ``helpers``; conftest.py holds the fixtures)."""

from __future__ import annotations

from pathlib import Path

from saleslake.lake import Lake, register_snapshots, snapshot_connection
from saleslake.serve.query import qualify_system

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def sql(lake: Lake, query: str) -> list[tuple]:
    """Run a query over the lake's committed snapshots (test helper)."""
    con = snapshot_connection(lake)  # s3fs on it for a lake in a bucket
    try:
        register_snapshots(con, lake.delta_tables())
        return con.sql(qualify_system(query)).fetchall()
    finally:
        con.close()


def write_csv(path: Path, text: str, encoding: str = "utf-8", bom: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode(encoding)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data)
    return path


HEADER = (
    "Row ID,Order ID,Order Date,Ship Date,Ship Mode,Customer ID,Customer Name,Segment,City,State,Country,"
    "Postal Code,Market,Region,Product ID,Category,Sub-Category,Product Name,Sales,Quantity,Discount,Profit,"
    "Shipping Cost,Order Priority"
)


def line(
    row_id="1",
    order_id="O-1",
    order_date="15-01-2021",
    ship_date="17-01-2021",
    customer="C-1",
    product="P-1",
    sales="100.50",
    quantity="2",
    discount="0.1",
    profit="10.5",
    name="Widget, large",
    segment="Consumer",
    country="Germany",
    state="Berlin",
) -> str:
    quoted = '"' + name.replace('"', '""') + '"'
    return (
        f"{row_id},{order_id},{order_date},{ship_date},Standard Class,{customer},Ann Lee,{segment},Berlin,{state},"
        f"{country},,EU,Central,{product},Furniture,Chairs,{quoted},{sales},{quantity},{discount},{profit},12.5,High"
    )


def long_first_row_export(path: Path) -> Path:
    """The issue's 50-line export whose first row's product name has 40,000 characters."""
    rows = [line(row_id="1", name="Chair " + "x" * 39_994)] + [line(row_id=str(i)) for i in range(2, 50)]
    return write_csv(path, HEADER + "\n" + "\n".join(rows) + "\n")


def wide_export(path: Path, extra_columns: int = 100_000, rows: int = 3) -> Path:
    """A header of 100,000 extra columns (~1.6 MB) after the 24 known ones, then data rows."""
    header = HEADER + "," + ",".join(f"Extra {i}" for i in range(extra_columns))
    body = "\n".join(line(row_id=str(i)) + "," * extra_columns for i in range(1, rows + 1))
    return write_csv(path, header + "\n" + body + "\n")


def free_ports(count: int) -> list[int]:
    """Distinct ports the kernel hands out on 127.0.0.1 (all held open until chosen)."""
    import socket

    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (right now)."""
    return free_ports(1)[0]


def build_gold_lake(root: Path) -> Path:
    """~3,000 generated order lines (13 regions, 2 % defects) landed and run through gold,
    with a flat tax rate so tax is not zero; returns the lake's home."""
    from saleslake import api

    api.generate_csv(root / "exports", rows=3000, error_rate=0.02, seed=5)
    settings = api.settings(home=root / "lake", tax={"flat_rate": "0.08"})
    assert not api.ingest_csv([root / "exports"], settings=settings).errors
    assert api.run(settings=settings).status == "succeeded"
    return settings.home


def messages(text: str) -> list[str]:
    """The messages in a command's output (summaries, stderr), each on one line again: the
    CLI wraps a long message at the terminal's width at a space and indents its
    continuation lines, so a line that starts with a space continues the one before.
    Not for tables (their rows start with spaces too)."""
    joined: list[str] = []
    for text_line in text.splitlines():
        if not text_line.strip():
            continue
        if text_line.startswith(" ") and joined:
            joined[-1] += " " + text_line.strip()
        else:
            joined.append(text_line)
    return joined


#: A stage's counts as ``status`` prints them, in its column order.
STATUS_COUNTS = ("rows_read", "rows_valid", "rows_quarantined", "rows_duplicate")


def ledger_counts(stages: dict[str, dict]) -> dict[str, list[int]]:
    """Per stage, the ledger's counts in ``status``'s column order (an unknown one is blank)."""
    return {stage: [c[k] for k in STATUS_COUNTS if c.get(k) is not None] for stage, c in stages.items()}


def printed_counts(text: str, stages: dict[str, dict]) -> dict[str, list[int]]:
    """Per stage named in ``stages``, the counts ``status`` printed for it, in column order:
    a table row (``silver   3,000   2,995 ...``) or, when the counts are too wide for a
    table, one folded message (``silver: read 3,000, valid ...``). ``text``: one run's
    lines, without its heading."""
    import re

    found = {}
    for said in messages(text):
        name = said.split()[0].removesuffix(":")
        if name in stages:
            found[name] = [int(n.replace(",", "")) for n in re.findall(r"\d[\d,]*", said.removeprefix(name))]
    return found


def race_for_the_lease(store, contenders: int) -> list[str]:
    """``contenders`` threads, each with its own Lease on ``store``, acquire at the same
    moment (a barrier); their outcomes, sorted: "won" or "refused"."""
    import threading

    from saleslake.storage.lease import Lease, LeaseHeldError

    leases = [Lease(store) for _ in range(contenders)]
    start = threading.Barrier(contenders)
    outcomes: list[str] = []

    def race(lease: Lease) -> None:
        start.wait()
        try:
            lease.acquire("run")
            outcomes.append("won")
        except LeaseHeldError:
            outcomes.append("refused")

    threads = [threading.Thread(target=race, args=(lease,)) for lease in leases]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sorted(outcomes)
