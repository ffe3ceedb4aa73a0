"""The DuckDB floor: read every CSV once and write Parquet, nothing else.

The least any pipeline can do with these bytes: one parse, one columnar write. Each
region folder is one dialect (from generation_summary.json); all fields stay text.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import duckdb


def main(data: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    dialects = json.loads((data / "generation_summary.json").read_text())["dialects"]
    con = duckdb.connect()
    for region, dialect in sorted(dialects.items()):
        files = sorted(str(p) for p in (data / region).glob("*.csv"))
        if not files:
            continue
        listing = "[" + ", ".join(f"'{f}'" for f in files) + "]"
        con.execute(
            f"COPY (SELECT * FROM read_csv({listing}, delim = '{dialect['delimiter']}', header = true, "
            f"all_varchar = true, quote = '\"', escape = '\"', ignore_errors = true)) "
            f"TO '{out / region}.parquet' (FORMAT parquet)"
        )


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
