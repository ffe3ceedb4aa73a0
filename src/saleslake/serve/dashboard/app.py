"""The saleslake dashboard, a Streamlit script: ``saleslake dashboard`` serves it.

It reads the lake named by ``SALESLAKE_HOME`` (or saleslake.toml / ``./lakehouse``)
through committed Delta snapshots only (gold at its latest release), so it keeps
working while a run or a stream writes. Every number comes from
:mod:`saleslake.serve.dashboard.data`, aggregated in DuckDB; results are cached per gold
release and filter choice, so a page that was seen once re-renders instantly and a new
release shows up within seconds.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import altair as alt
import pyarrow as pa
import pyarrow.compute as pc
import streamlit as st

from saleslake.config import load_settings
from saleslake.errors import SaleslakeError
from saleslake.lake import Lake
from saleslake.serve.dashboard import data
from saleslake.serve.dashboard.formatting import count, currency_symbol, money, money_column_format, percent
from saleslake.serve.health import check_health
from saleslake.serve.status import run_status

TOKEN_TTL = 5  # seconds between checks for a new gold release (a few ms each)
PIPELINE_TTL = 15  # runs, freshness and health change without a release
BREAKDOWN_TITLES = {
    "region": "Region",
    "country": "Country",
    "category": "Category",
    "segment": "Customer segment",
    "store": "Store",
}
CHART_ROWS = 15  # bars per breakdown chart; the table beside it lists every member


# -- cached reads ---------------------------------------------------------------------------


@st.cache_data(ttl=TOKEN_TTL, show_spinner=False)
def snapshot_token(home: str) -> str | None:
    return data.snapshot_token(Lake(Path(home)))


@st.cache_resource(max_entries=2, show_spinner=False)
def reader(home: str, token: str):
    """One DuckDB reader per gold release, shared by every session (each query runs on a
    cursor of its own, which is thread-safe)."""
    return data.open_reader(Lake(Path(home)))


def _cursor(home: str, token: str):
    return reader(home, token).cursor()


@st.cache_data(ttl=600, max_entries=4, show_spinner=False)
def filter_options(home: str, token: str) -> dict:
    con = _cursor(home, token)
    try:
        return {
            **data.filter_options(con),
            "currencies": data.currencies(con),
            "release": data.release_info(Lake(Path(home))),
        }
    finally:
        con.close()


@st.cache_data(ttl=600, max_entries=64, show_spinner="Reading gold …")
def sales_view(home: str, token: str, filters: data.Filters) -> dict:
    """Everything the sales tabs show for one filter choice, read with one cursor."""
    con = _cursor(home, token)
    try:
        return {
            "kpis": data.kpis(con, filters),
            "day": data.trend(con, filters, "day"),
            "month": data.trend(con, filters, "month"),
            "breakdowns": {name: data.breakdown(con, filters, name) for name in data.DIMENSIONS},
            "top_products": data.top_products(con, filters),
            "top_customers": data.top_customers(con, filters),
            "dq_scores": data.dq_scores(con, filters),
        }
    finally:
        con.close()


@st.cache_data(ttl=600, max_entries=4, show_spinner=False)
def quality_view(home: str, token: str) -> dict:
    con = _cursor(home, token)
    try:
        return {
            "summary": data.quarantine_summary(con),
            "over_time": data.quarantine_by_reason_over_time(con),
            "reasons": data.quarantine_reasons(con),
        }
    finally:
        con.close()


@st.cache_data(ttl=PIPELINE_TTL, show_spinner="Checking pipeline health …")
def pipeline_view(home: str) -> dict:
    """Runs and health (freshness per source, quarantine rate, stream lag). Health asks
    the Kafka broker for the stream's lag only when the lake has a stream; the short
    TTL keeps that off the path of most renders."""
    settings = load_settings(home=home)
    lake = Lake(settings.home)
    return {"runs": run_status(lake, 10), "health": check_health(lake, settings)}


# -- page parts -------------------------------------------------------------------------------


def sidebar(options: dict) -> data.Filters:
    first, last = options["first_date"], options["last_date"]
    with st.sidebar:
        st.header("Filters")
        picked = st.date_input(
            "Order date", value=(first, last), min_value=first, max_value=last, key="dates", format="YYYY-MM-DD"
        )
        regions = st.multiselect("Region", options["regions"], key="regions", placeholder="All regions")
        categories = st.multiselect("Category", options["categories"], key="categories", placeholder="All categories")
        st.caption(
            "Trends, breakdowns, top lists and the data-quality score follow the filters; "
            "quarantine and pipeline health are lake-wide."
        )
    start, end = _date_range(picked, first, last)
    # the full range is no filter at all: one cache entry for the default view
    return data.Filters(
        start=None if start == first else start,
        end=None if end == last else end,
        regions=tuple(regions),
        categories=tuple(categories),
    )


def _date_range(picked, first: date, last: date) -> tuple[date, date]:
    """A range being picked has one end only; until the second click it runs to the end."""
    if isinstance(picked, date):
        return picked, last
    picked = tuple(picked or ())
    if len(picked) == 2:
        return picked[0], picked[1]
    return (picked[0], last) if picked else (first, last)


def kpi_row(k: dict, day: pa.Table, symbol: str) -> None:
    """Six cards in two rows of three (wide enough for full amounts), each with its
    daily sparkline."""

    def series(name: str) -> list | None:
        return [0.0 if v is None else v for v in day.column(name).to_pylist()] or None

    top, bottom = st.columns(3), st.columns(3)
    top[0].metric(
        "Revenue",
        money(k["revenue"], symbol),
        border=True,
        chart_data=series("revenue"),
        help=f"Net sales: gross {money(k['gross_sales'], symbol)} minus discounts "
        f"{money(k['discounts'], symbol)}, before tax. Exact: {k['revenue']}.",
    )
    top[1].metric(
        "Orders",
        count(k["orders"]),
        border=True,
        chart_data=series("orders"),
        chart_type="bar",
        help=f"Distinct orders ({count(k['lines'])} order lines).",
    )
    top[2].metric(
        "Average order value",
        money(k["aov"], symbol),
        border=True,
        chart_data=series("avg_order_value"),
        help="Revenue / orders.",
    )
    bottom[0].metric(
        "Margin",
        percent(k["margin"]),
        border=True,
        chart_data=series("margin"),
        help=f"Profit {money(k['profit'], symbol)} / revenue.",
    )
    bottom[1].metric(
        "Tax collected",
        money(k["tax"], symbol),
        border=True,
        chart_data=series("tax"),
        chart_type="bar",
        help="Sum of the tax on each line's net amount (rates from the tax settings).",
    )
    bottom[2].metric(
        "Suspected fraud",
        percent(k["fraud_rate"]),
        border=True,
        chart_data=series("fraud_rate"),
        help=f"{count(k['fraud_lines'])} of {count(k['lines'])} lines flagged by the fraud rules.",
    )


def _money_config(currencies: list[str], *names: str) -> dict:
    fmt = money_column_format(currencies)
    return {name: st.column_config.NumberColumn(name.replace("_", " "), format=fmt) for name in names}


def _percent_config(*names: str) -> dict:
    return {name: st.column_config.NumberColumn(name.replace("_", " "), format="percent") for name in names}


def trends_tab(view: dict, currencies: list[str]) -> None:
    day, month = view["day"], view["month"]
    left, right = st.columns(2)
    with left:
        st.subheader("Revenue per day")
        st.line_chart(day.select(["day", "revenue"]).to_pandas(), x="day", y="revenue", y_label="revenue")
    with right:
        st.subheader("Orders per day")
        st.line_chart(day.select(["day", "orders"]).to_pandas(), x="day", y="orders", color="#f28e2b")
    left, right = st.columns(2)
    # months as "2024-03" labels: one evenly spaced bar each, not a sliver on a time axis
    labels = pa.table({"month": pc.strftime(month.column("month"), "%Y-%m"), "revenue": month.column("revenue")})
    with left:
        st.subheader("Revenue per month")
        st.bar_chart(labels.to_pandas(), x="month", y="revenue", sort=False)
    with right:
        st.subheader("Months")
        st.dataframe(
            month.to_pandas(),
            hide_index=True,
            key="months_table",
            column_order=["month", "revenue", "orders", "avg_order_value", "margin", "tax", "fraud_rate"],
            column_config={
                "month": st.column_config.DateColumn("month", format="YYYY-MM"),
                **_money_config(currencies, "revenue", "avg_order_value", "tax"),
                **_percent_config("margin", "fraud_rate"),
                "avg_order_value": st.column_config.NumberColumn("AOV", format=money_column_format(currencies)),
                "fraud_rate": st.column_config.NumberColumn("fraud", format="percent"),
            },
        )


def breakdowns_tab(view: dict, currencies: list[str]) -> None:
    for name, title in BREAKDOWN_TITLES.items():
        table = view["breakdowns"][name]
        st.subheader(f"By {title.lower()}")
        left, right = st.columns([3, 2])
        with left:
            st.bar_chart(
                table.slice(0, CHART_ROWS).select([name, "revenue"]).to_pandas(),
                x=name,
                y="revenue",
                horizontal=True,
                sort="-revenue",
                height=max(160, 28 * min(table.num_rows, CHART_ROWS)),
            )
        with right:
            st.dataframe(
                table.to_pandas(),
                hide_index=True,
                key=f"breakdown_{name}",
                height=min(400, 36 * (table.num_rows + 1) + 3),
                column_order=[name, "revenue", "orders", "margin", "share"],
                column_config={**_money_config(currencies, "revenue"), **_percent_config("margin", "share")},
            )


def top_tab(view: dict, currencies: list[str]) -> None:
    left, right = st.columns(2)
    with left:
        st.subheader("Top 10 products")
        st.dataframe(
            view["top_products"].to_pandas(),
            hide_index=True,
            key="top_products",
            column_order=["product_name", "category", "revenue", "quantity", "margin"],
            column_config={**_money_config(currencies, "revenue"), **_percent_config("margin")},
        )
    with right:
        st.subheader("Top 10 customers")
        st.dataframe(
            view["top_customers"].to_pandas(),
            hide_index=True,
            key="top_customers",
            column_order=["customer_name", "segment", "revenue", "orders", "avg_order_value"],
            column_config=_money_config(currencies, "revenue", "avg_order_value"),
        )


def quality_tab(view: dict, quality: dict) -> None:
    k, summary = view["kpis"], quality["summary"]
    cols = st.columns(4)
    cols[0].metric(
        "Average data-quality score",
        "–" if k["avg_dq_score"] is None else f"{k['avg_dq_score']:.1f}",
        border=True,
        help="Mean dq_score (0-100) of the filtered lines: completeness and plausibility.",
    )
    cols[1].metric(
        "Quarantined rows",
        count(summary["quarantined_rows"]),
        border=True,
        help="Rows silver rejected, lake-wide (`saleslake quarantine` lists them).",
    )
    cols[2].metric(
        "Quarantine share",
        percent(summary["share"]),
        border=True,
        help="Quarantined rows / (quarantined rows + valid lines), lake-wide.",
    )
    cols[3].metric(
        "Outlier lines",
        count(k["outlier_lines"]),
        border=True,
        help="Filtered lines above the outlier threshold: flagged, kept.",
    )
    left, right = st.columns(2)
    with left:
        st.subheader("Quarantine by reason over time")
        over_time = quality["over_time"]
        if over_time.num_rows:
            st.altair_chart(_quarantine_chart(over_time), width="stretch")
        else:
            st.success("Nothing quarantined.")
    with right:
        st.subheader("Data-quality score of the filtered lines")
        st.bar_chart(view["dq_scores"].to_pandas(), x="dq_score", y="lines")
    st.subheader("Reason codes")
    st.dataframe(
        quality["reasons"].to_pandas(),
        hide_index=True,
        key="reasons",
        column_config=_percent_config("share_of_quarantined"),
    )


def _quarantine_chart(over_time: pa.Table) -> alt.Chart:
    """Stacked bars per landing day; altair rather than st.bar_chart for a legend that
    wraps instead of running off the side."""
    frame = over_time.set_column(0, "day", pc.strftime(over_time.column("day"), "%Y-%m-%d")).to_pandas()
    return (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            x=alt.X("day:O", title="landing day (UTC)", axis=alt.Axis(labelAngle=0)),
            y=alt.Y("sum(rows):Q", title="rows with this reason"),
            color=alt.Color("reason:N", title=None, legend=alt.Legend(orient="bottom", columns=2, labelLimit=240)),
            tooltip=["day", "reason", "rows"],
        )
        .properties(height=320)
    )


def pipeline_tab(pipeline: dict) -> None:
    health = pipeline["health"]
    if health.ok:
        st.success("Healthy: every source is fresh, quarantine and stream lag are within their limits.")
    for problem in health.problems:
        st.warning(problem)
    q = health.quarantine
    cols = st.columns(3)
    cols[0].metric(
        f"Quarantine rate, last {q['window_hours']:g} h",
        percent(q["share"]),
        border=True,
        help=f"{count(q['rows_quarantined'])} of {count(q['rows_read'])} rows read; limit {percent(q['max_share'])}.",
    )
    stream = health.stream
    cols[1].metric(
        "Stream lag",
        count(stream.get("total_lag")) if stream else "no stream",
        border=True,
        help=(
            f"Messages on {stream['topic']} not yet in silver; limit {count(stream['max_lag'])}."
            if stream
            else "No point-of-sale stream in this lake."
        ),
    )
    cols[2].metric("Sources", count(len(health.sources)), border=True, help="Source systems with lines in silver.")
    st.subheader("Freshness per source")
    st.dataframe(_freshness_rows(health.sources), hide_index=True, key="freshness")
    st.subheader("Last runs")
    st.dataframe(_run_rows(pipeline["runs"]), hide_index=True, key="runs")
    if stream and stream.get("lag"):
        st.subheader(f"Stream lag per partition of {stream['topic']}")
        st.dataframe([{"partition": p, "lag": lag} for p, lag in sorted(stream["lag"].items())], hide_index=True)


def _freshness_rows(sources: list[dict]) -> list[dict]:
    return [
        {
            "source": s["source_system"],
            "silver lines": s["silver_lines"],
            "gold lines": s["gold_lines"],
            "newest event": _short(s["last_event_at"]),
            "newest landed": _short(s["last_ingested_at"]),
            "age": _age(s["silver_age_seconds"]),
            "limit": _age(s["max_age_seconds"]),
            "stale": "yes" if s["stale"] else "no",
        }
        for s in sources
    ]


def _run_rows(runs: list[dict]) -> list[dict]:
    rows = []
    for r in runs:
        silver, gold = r["stages"].get("silver") or {}, r["stages"].get("gold") or {}
        rows.append(
            {
                "run": r["run_id"],
                "command": r["command"],
                "status": r["status"],
                "started": _short(r["started_at"]),
                "finished": _short(r["finished_at"]),
                "silver read": silver.get("rows_read"),
                "valid": silver.get("rows_valid"),
                "quarantined": silver.get("rows_quarantined"),
                "duplicate": silver.get("rows_duplicate"),
                "gold lines": gold.get("rows_valid"),
                "error": r["error"] or "",
            }
        )
    return rows


def _short(iso: str | None) -> str:
    return "" if not iso else iso[:19].replace("T", " ")


def _age(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 120:
        return f"{seconds:,.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:,.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:,.1f} h"
    return f"{seconds / 86400:,.1f} days"


def empty_lake(home: str) -> None:
    """No gold release yet: say how to make one instead of failing."""
    st.info(f"No gold data in {home} yet: the dashboard shows the latest published gold release.")
    st.markdown("Build one with the sample data, or with your own exports:")
    st.code(
        f"saleslake demo --home {home}\n\nsaleslake ingest csv exports/ --home {home}\nsaleslake run --home {home}",
        language="bash",
    )
    runs = run_status(Lake(load_settings(home=home).home), 10) if Path(home).is_dir() else []
    if runs:
        st.subheader("Last runs")
        st.dataframe(_run_rows(runs), hide_index=True, key="runs")


def header(home: str, options: dict) -> None:
    release = options["release"]
    published = release["published_at"]
    when = published.strftime("%Y-%m-%d %H:%M:%S UTC") if isinstance(published, datetime) else str(published)
    st.title("saleslake · sales")
    st.caption(
        f"Orders from {options['first_date']} to {options['last_date']} · gold release "
        f"{release['release_id'][:8]} published {when} · lake {home}"
    )
    if len(options["currencies"]) > 1:
        st.warning(
            "The lines are in several currencies ("
            + ", ".join(options["currencies"])
            + "): the money totals add them up unconverted."
        )


# -- the page ---------------------------------------------------------------------------------


def main() -> None:
    st.set_page_config(page_title="saleslake dashboard", page_icon="📊", layout="wide")
    try:
        home = str(Path(load_settings().home).absolute())
    except SaleslakeError as exc:  # a bad saleslake.toml or SALESLAKE_* value: one line, as the CLI says it
        st.error(str(exc))
        return
    token = snapshot_token(home)
    if token is None:
        st.title("saleslake")
        empty_lake(home)
        return
    options = filter_options(home, token)
    filters = sidebar(options)
    header(home, options)
    view = sales_view(home, token, filters)
    symbol = currency_symbol(options["currencies"])
    kpi_row(view["kpis"], view["day"], symbol)
    if view["kpis"]["lines"] == 0:
        st.info("No sales match these filters.")
    tabs = st.tabs(["Trends", "Breakdowns", "Top products & customers", "Data quality", "Pipeline health"])
    with tabs[0]:
        trends_tab(view, options["currencies"])
    with tabs[1]:
        breakdowns_tab(view, options["currencies"])
    with tabs[2]:
        top_tab(view, options["currencies"])
    with tabs[3]:
        quality_tab(view, quality_view(home, token))
    with tabs[4]:
        pipeline_tab(pipeline_view(home))


main()
