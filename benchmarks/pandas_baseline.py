"""The classic pandas approach, as hand-written sales pipelines do it.

Read every CSV with pandas, clean (coerce types, drop invalid rows, drop duplicate
lines keeping the last), derive amounts, build dimensions (latest attributes only, no
history) and the fact with merges, write Parquet. It does much less than saleslake:
no quarantine, no lineage, no SCD2 history, no exactly-once, float money.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

NUMBERS = ["Sales", "Quantity", "Discount", "Profit", "Shipping Cost"]


def read_region(folder: Path, dialect: dict) -> pd.DataFrame:
    frames = [
        pd.read_csv(
            f,
            sep=dialect["delimiter"],
            dtype=str,
            encoding="utf-8-sig",
            keep_default_na=False,
            na_values=[""],
            on_bad_lines="skip",
        )
        for f in sorted(folder.glob("*.csv"))
    ]
    df = pd.concat(frames, ignore_index=True)
    df["Region Source"] = folder.name
    for col in NUMBERS:
        text = df[col].str.replace(",", ".", regex=False) if dialect["decimal"] == "," else df[col]
        df[col] = pd.to_numeric(text, errors="coerce")
    for col in ("Order Date", "Ship Date"):
        df[col] = pd.to_datetime(df[col], format=dialect["date_format"], errors="coerce")
    return df


def main(data: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    dialects = json.loads((data / "generation_summary.json").read_text())["dialects"]
    df = pd.concat(
        [read_region(data / r, d) for r, d in sorted(dialects.items()) if (data / r).is_dir()], ignore_index=True
    )
    required = ["Order ID", "Row ID", "Order Date", "Customer ID", "Product ID", "Quantity", "Sales"]
    ok = df[required].notna().all(axis=1) & (df["Quantity"] > 0) & (df["Sales"] > 0)
    ok &= df["Discount"].between(0, 1) & ~(df["Ship Date"] < df["Order Date"])
    df = df[ok].drop_duplicates(subset=["Region Source", "Order ID", "Row ID"], keep="last")
    df["Discount Amount"] = df["Sales"] * df["Discount"]
    df["Net Sales"] = df["Sales"] - df["Discount Amount"]
    df["Tax"] = (df["Net Sales"] * 0.0).round(2)
    df["Profit Margin"] = df["Profit"] / df["Net Sales"]

    customers = (
        df[["Customer ID", "Customer Name", "Segment"]]
        .drop_duplicates("Customer ID", keep="last")
        .reset_index(drop=True)
    )
    customers["customer_sk"] = customers.index + 1
    products = (
        df[["Product ID", "Product Name", "Category", "Sub-Category"]]
        .drop_duplicates("Product ID", keep="last")
        .reset_index(drop=True)
    )
    products["product_sk"] = products.index + 1
    geo_cols = ["City", "State", "Country", "Postal Code", "Region", "Market"]
    geography = df[geo_cols].drop_duplicates().reset_index(drop=True)
    geography["geography_sk"] = geography.index + 1
    dates = pd.DataFrame({"date": pd.date_range(df["Order Date"].min(), df["Order Date"].max())})
    dates["date_key"] = dates["date"].dt.strftime("%Y%m%d").astype(int)

    fact = df.merge(customers[["Customer ID", "customer_sk"]], on="Customer ID")
    fact = fact.merge(products[["Product ID", "product_sk"]], on="Product ID")
    fact = fact.merge(geography, on=geo_cols, how="left")
    fact["order_date_key"] = fact["Order Date"].dt.strftime("%Y%m%d").astype(int)
    fact = fact.drop(columns=["Customer Name", "Segment", "Product Name", "Category", "Sub-Category", *geo_cols])
    fact.columns = [str(c) for c in fact.columns]
    for name, frame in (
        ("fact_sales", fact),
        ("dim_customer", customers),
        ("dim_product", products),
        ("dim_geography", geography),
        ("dim_date", dates),
    ):
        frame.to_parquet(out / f"{name}.parquet", index=False)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
