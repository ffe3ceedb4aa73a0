"""Typed settings: defaults < saleslake.toml < environment (SALESLAKE_..., sections joined
with ``__``). Secrets are never fields with defaults; they come from the environment or
``..._FILE`` files only.
"""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from saleslake.errors import ConfigError


class QualitySettings(BaseModel):
    max_quarantine_share: float = Field(0.20, ge=0.0, le=1.0)
    outlier_threshold: Decimal = Decimal("10000")


class TaxSettings(BaseModel):
    """Tax rates as fractions (0.085 = 8.5 %).

    ``rates`` keys are a country (``"Germany"``) or a country and state
    (``"United States/California"``); the most specific key wins, then ``flat_rate``.
    """

    flat_rate: Decimal = Decimal("0")
    rates: dict[str, Decimal] = Field(default_factory=dict)

    @field_validator("flat_rate")
    @classmethod
    def _rate_is_fraction(cls, v: Decimal) -> Decimal:
        if not Decimal(0) <= v <= Decimal(1):
            raise ValueError("a tax rate is a fraction between 0 and 1")
        return v


class FraudSettings(BaseModel):
    amount_threshold: Decimal = Decimal("1000")
    high_discount: Decimal = Decimal("0.5")
    high_discount_amount: Decimal = Decimal("500")


class CsvSettings(BaseModel):
    default_currency: str = "USD"
    # Files are parsed in chunks of about this many bytes so memory stays bounded.
    chunk_bytes: int = Field(128 * 1024 * 1024, gt=0)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SALESLAKE_",
        env_nested_delimiter="__",
        extra="forbid",
    )

    home: Path = Path("lakehouse")
    quality: QualitySettings = Field(default_factory=QualitySettings)
    tax: TaxSettings = Field(default_factory=TaxSettings)
    fraud: FraudSettings = Field(default_factory=FraudSettings)
    csv: CsvSettings = Field(default_factory=CsvSettings)
    # Peak RSS stays under ~4 GB at any input size with these two bounds (benchmarks/).
    duckdb_memory_limit: str = "2GB"
    duckdb_threads: int = Field(0, ge=0)  # 0 = all cores

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=config_file_path())
        return (init_settings, env_settings, toml)


def config_file_path() -> Path | None:
    """``$SALESLAKE_CONFIG`` if set, else ``./saleslake.toml`` when it exists."""
    explicit = os.environ.get("SALESLAKE_CONFIG")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"SALESLAKE_CONFIG names {path}, which is not a file")
        return path
    local = Path("saleslake.toml")
    return local if local.is_file() else None


def load_settings(**overrides: Any) -> Settings:
    """Resolve settings; a bad value becomes one ConfigError line naming the field."""
    clean = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**clean)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "settings"
        raise ConfigError(
            f"invalid setting {where}: {first['msg']} (env SALESLAKE_{where.upper().replace('.', '__')})"
        ) from None
    except ValueError as exc:  # e.g. TOML syntax errors
        raise ConfigError(f"cannot read configuration: {exc}") from None


def read_secret(name: str) -> str | None:
    """A secret from ``$NAME`` or from the file named by ``$NAME_FILE``; never logged."""
    value = os.environ.get(name)
    if value:
        return value
    file_name = os.environ.get(f"{name}_FILE")
    if file_name:
        try:
            return Path(file_name).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{name}_FILE names a file that cannot be read: {exc.strerror}") from None
    return None
