"""The documentation stays usable: the README is short enough to read in five minutes (under
15,000 bytes, its lines within 80 columns outside tables), every relative link in the
Markdown files resolves to a file of the repository (and a heading, when it names one),
docs/configuration.md lists every setting, and docs/contract.md declares the run ledger's
rows the commands write."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from helpers import HEADER, ROOT, line, write_csv
from saleslake import api
from saleslake.config import Settings
from saleslake.errors import QualityGateError, TransientError

README = ROOT / "README.md"
CONTRACT = ROOT / "docs/contract.md"
README_MAX_BYTES = 15_000
DOCS = [README, *sorted((ROOT / "docs").rglob("*.md")), ROOT / "benchmarks/README.md", ROOT / "airflow/README.md"]

_FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.M | re.S)
_CODE_SPAN = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[[^\]]*\]\(([^()\s]+)\)")


def _prose(text: str) -> str:
    """The text without fenced blocks and code spans (a link there is an example, not a link)."""
    return _CODE_SPAN.sub("", _FENCE.sub("", text))


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"[^\w\- ]", "", _CODE_SPAN.sub(lambda m: m.group(0)[1:-1], heading).strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", _FENCE.sub("", path.read_text(encoding="utf-8")), re.M)
    return {_anchor(h) for h in headings}


def _broken_links(path: Path, text: str | None = None) -> list[str]:
    broken = []
    for target in _LINK.findall(_prose(path.read_text(encoding="utf-8") if text is None else text)):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file_part, _, fragment = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path
        if not resolved.is_relative_to(ROOT) or not resolved.exists():
            broken.append(f"{path.relative_to(ROOT)}: {target} (no such file)")
        elif fragment and resolved.suffix == ".md" and fragment not in _anchors(resolved):
            broken.append(f"{path.relative_to(ROOT)}: {target} (no such heading)")
    return broken


def test_the_readme_is_short():
    assert README.stat().st_size < README_MAX_BYTES


def test_readme_lines_fit_80_columns_outside_tables():
    wide = [
        line for line in README.read_text(encoding="utf-8").splitlines() if len(line) > 80 and not line.startswith("|")
    ]
    assert wide == []


def test_every_relative_link_resolves():
    broken = [b for path in DOCS for b in _broken_links(path)]
    assert broken == []


def test_the_link_check_sees_what_is_broken():
    page = ROOT / "docs" / "architecture.md"  # links resolve from this page's folder
    text = (
        "[ok](decisions/README.md) [ok](contract.md#1-command-line) [web](https://example.com/x)\n"
        "[gone](no-such-page.md) [heading](contract.md#no-such-heading) [out](../../etc/passwd)\n"
        "`[code](no-such-file.md)`\n```\n[fenced](no-such-file.md)\n```\n"
    )
    assert [b.split(": ")[1] for b in _broken_links(page, text)] == [
        "no-such-page.md (no such file)",
        "contract.md#no-such-heading (no such heading)",
        "../../etc/passwd (no such file)",
    ]


def test_the_configuration_page_lists_every_setting():
    documented = set(
        re.findall(r"^\| `([a-z_.]+)` \|", (ROOT / "docs/configuration.md").read_text(encoding="utf-8"), re.M)
    )

    def paths(model: type[BaseModel], prefix: str = "") -> list[str]:
        found = []
        for name, field in model.model_fields.items():
            kind = field.annotation
            nested = isinstance(kind, type) and issubclass(kind, BaseModel)
            found += paths(kind, f"{prefix}{name}.") if nested else [prefix + name]  # type: ignore[arg-type]
        return found

    assert sorted(set(paths(Settings)) - documented) == []


def _ledger_section() -> str:
    match = re.search(r"^### Run ledger.*?(?=^##)", CONTRACT.read_text(encoding="utf-8"), re.M | re.S)
    assert match, "docs/contract.md has no 'Run ledger' section"
    return match.group(0)


def _stages_per_command(section: str) -> dict[str, str]:
    """The ledger table: each command named in a row's first cell -> the row's stage cell."""
    table = {}
    for row in section.splitlines():
        if row.startswith("| `"):
            cells = row.split("|")
            for command in re.findall(r"`([^`]+)`", cells[1]):
                table[command] = cells[2]
    return table


def test_the_contract_declares_the_ledger_rows_the_commands_write(settings, tmp_path):
    """What the commands write to system.runs (on success, with a file that cannot land,
    at the quality gate, when a stage raises) is what docs/contract.md declares: the
    command's row of the ledger table names each stage, the section each status."""
    good = write_csv(tmp_path / "in/good.csv", f"{HEADER}\n{line()}\n{line(row_id='2', sales='abc')}\n")
    unusable = write_csv(tmp_path / "in/unusable.csv", "not,a,sales,export\n1,2,3,4\n")
    landed = api.ingest_csv([good, unusable], settings=settings)  # lands one, reports the other
    assert len(landed.landed) == 1 and len(landed.errors) == 1
    api.run(until="silver", settings=settings)
    with pytest.raises(QualityGateError):  # one of two rows quarantined, nothing allowed
        api.run(until="gold", max_quarantine_share=0.0, settings=settings)
    nobody_listens = settings.model_copy(update={"oltp": settings.oltp.model_copy(update={"retries": 0})})
    with pytest.raises(TransientError):  # the extract stage raises
        api.ingest_postgres(dsn="postgresql://saleslake_reader@127.0.0.1:1/shop", settings=nobody_listens)

    written = api.query("SELECT * FROM system.runs", settings=settings).to_pylist()
    kinds = {(r["command"], r["stage"], r["status"]) for r in written}
    assert {
        ("ingest csv", "bronze", "failed"),
        ("ingest csv", "run", "failed"),
        ("run", "silver", "succeeded"),
        ("run", "silver", "quality_gate"),
        ("run", "run", "quality_gate"),
        ("ingest postgres", "bronze", "failed"),
        ("ingest postgres", "run", "failed"),
    } <= kinds
    assert {s for c, s, _ in kinds if c == "ingest postgres"} == {"run", "bronze"}  # no stage after a failure
    section = _ledger_section()
    stages = _stages_per_command(section)
    for command, stage, status in kinds:
        assert f"`{status}`" in section, status
        assert stage == "run" or f"`{stage}`" in stages[command], (command, stage)
    for r in written:
        assert r["rows_read"] == r["rows_valid"] + r["rows_quarantined"] + r["rows_duplicate"], r
    failed = [r for r in written if r["status"] in ("failed", "quality_gate") and r["stage"] == "run"]
    assert failed and all(r["error"] and "\n" not in r["error"] for r in failed)
