"""The quality gate (CONTRACT §4): gold is not published while the share of quarantined
rows of all silver work since gold was last published is above the threshold."""

from __future__ import annotations

import json

from saleslake.errors import QualityGateError
from saleslake.lake import Lake
from saleslake.runs import StageCounts, ledger_rows


def gate_share(lake: Lake, this_run: StageCounts, this_details: dict | None = None) -> tuple[float, int, int]:
    """(share, quarantined, read) over all silver work not yet published to gold (incl.
    this run's ``this_run``).

    The rows of an earlier parse that a reparse replaced leave the share when the run that
    counted them is in the window (its ``csv_seqs`` range holds the batch that wrote them):
    a file quarantined whole for a wrong --decimal, then reparsed, must not keep gold from
    being published. Their counts are in the reparse's manifest row, so a run killed while
    it replaced them changes nothing here."""
    from saleslake.bronze import replaced_parses
    from saleslake.silver.process import processed_seq

    rows = ledger_rows(lake)
    last_gold = max(
        (r["recorded_at"] for r in rows if r["stage"] == "gold" and r["status"] == "succeeded"), default=None
    )
    read = this_run.rows_read
    quarantined = this_run.rows_quarantined
    ranges = [this_details["csv_seqs"]] if this_details and this_details.get("csv_seqs") else []
    for r in rows:
        if (
            r["stage"] == "silver"
            and r["status"] in ("succeeded", "quality_gate")
            and (last_gold is None or r["recorded_at"] > last_gold)
        ):
            read += r["rows_read"] or 0
            quarantined += r["rows_quarantined"] or 0
            ranges += [json.loads(r["details"] or "{}").get("csv_seqs")] if r["details"] else []
    for parse in replaced_parses(lake, processed_seq(lake)):
        if any(low <= parse["batch_seq"] <= high for low, high in filter(None, ranges)):
            read -= parse["rows"]
            quarantined -= parse["quarantined"]
    read, quarantined = max(read, 0), max(quarantined, 0)
    return (quarantined / read if read else 0.0), quarantined, read


def gate_error(share: float, quarantined: int, read: int, threshold: float, committed: bool) -> QualityGateError:
    """The gate's one line; ``committed``: said by a run that has just committed silver."""
    said = (
        f"quality gate: {quarantined} of {read} rows ({share:.1%}) were quarantined since gold was last "
        f"published, above the threshold {threshold:.1%}"
    )
    if committed:
        return QualityGateError(
            f"{said}; silver and quarantine are committed, gold was not published (inspect with "
            "`saleslake quarantine`, then rerun with a higher --max-quarantine-share)"
        )
    return QualityGateError(f"{said} (inspect with `saleslake quarantine`)")


def check_gate(lake: Lake, threshold: float) -> dict:
    """The gate over the silver work not yet in gold: ``{"share", "rows_quarantined",
    "rows_read", "threshold"}``; raises QualityGateError above ``threshold``."""
    share, quarantined, read = gate_share(lake, StageCounts())
    if share > threshold:
        raise gate_error(share, quarantined, read, threshold, committed=False)
    return {"share": round(share, 6), "rows_quarantined": quarantined, "rows_read": read, "threshold": threshold}
