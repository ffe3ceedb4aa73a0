"""The sample generators' catalogs: geography, products, names and shop words, shipped as
package data in ``saleslake/sample/data/<name>.toml`` (TOML: typed, commented, one entry a
line, and ``tomllib`` is in the standard library)::

    from saleslake.sample import catalog
    catalog.load("geography")["regions"]["north"]["label"]  # 'North'

Each file is read from the installed package (works from a wheel or a zip) and parsed once
per process. The generators turn the parsed values into their own types; the order of
entries is part of the data (the generators draw by index).
"""

from __future__ import annotations

import tomllib
from functools import cache
from importlib import resources
from typing import Any

__all__ = ["NAMES", "load", "strings"]

NAMES = ("geography", "people", "pos", "products", "shop")


@cache
def load(name: str) -> dict[str, Any]:
    """The parsed ``data/<name>.toml``; ``name`` is one of :data:`NAMES`."""
    if name not in NAMES:
        raise ValueError(f"no sample catalog {name!r}; known: {', '.join(NAMES)}")
    return tomllib.loads(resources.files("saleslake.sample").joinpath("data", f"{name}.toml").read_text("utf-8"))


def strings(name: str, key: str) -> tuple[str, ...]:
    """A list of strings of a catalog, as the tuple the generators index."""
    return tuple(load(name)[key])
