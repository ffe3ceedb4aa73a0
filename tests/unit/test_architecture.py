"""The package's shape holds: the public API is exactly ``api.__all__`` (as httpx checks
its own), imports point one way (the import-linter contract in pyproject.toml), and the
Airflow DAGs import only ``saleslake.api``."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
import types
from pathlib import Path

from helpers import ROOT
from saleslake import api

# what api.py imports to do its work (not part of the API)
IMPLEMENTATION = {"annotations", "Callable", "Sequence", "datetime", "Path", "Literal", "pa", "Lake", "CsvOverrides",
                  "load_settings", "dsn_without_password"}  # fmt: skip


def test_the_public_api_is_exactly_all():
    public = {n for n, v in vars(api).items() if not n.startswith("_") and not isinstance(v, types.ModuleType)}
    assert sorted(public - IMPLEMENTATION) == sorted(api.__all__)
    for name in api.__all__:
        value = getattr(api, name)
        if inspect.isfunction(value):  # a usage line in every function's docstring
            assert "api." in (value.__doc__ or ""), f"api.{name}'s docstring shows no usage"


def test_imports_point_one_way():
    done = subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports")), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:]


def test_the_dags_import_only_the_public_api():
    tree = ast.parse((ROOT / "airflow" / "dags" / "saleslake_dags.py").read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("saleslake"):
            imported |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            imported |= {a.name for a in node.names if a.name.startswith("saleslake")}
    assert imported == {"saleslake.api"}, imported
