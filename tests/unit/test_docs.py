"""The documentation stays usable: the README is short enough to read in five minutes (under
15,000 bytes, its lines within 80 columns outside tables), every relative link in the
Markdown files resolves to a file of the repository (and a heading, when it names one), and
docs/configuration.md lists every setting."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel

from helpers import ROOT
from saleslake.config import Settings

README = ROOT / "README.md"
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
