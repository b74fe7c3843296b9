"""A raw source as configs name it (docs/design.md §2): its format, where it is, which domains.

data_prep reads sources and the evaluator names its downstream datasets' sources with the same
dataclass. It lives here, importing nothing heavy, so the evaluator's config needs no data_prep.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from cprec.core.config import option
from cprec.core.errors import CPRecError

FORMATS = ("amazon2023", "amazon2018", "recbole", "online_retail")

DEFAULT_RETAIL_DOMAIN = "Online_Retail"

# RecBole .item fields tried in order for each part of the item text (ml-100k names its genres `class`).
RECBOLE_TITLE_COLUMNS = ("title", "movie_title", "name")
RECBOLE_BRAND_COLUMNS = ("brand", "store")
RECBOLE_CATEGORY_COLUMNS = ("categories", "category", "genre", "class")
_COLUMN_OPTIONS = {
    "title_columns": RECBOLE_TITLE_COLUMNS,
    "brand_columns": RECBOLE_BRAND_COLUMNS,
    "category_columns": RECBOLE_CATEGORY_COLUMNS,
}


@dataclass
class SourceConfig:
    format: str = option("amazon2023", help="source format: amazon2023, amazon2018, recbole or online_retail")
    path: str = option("", help="a file or a directory (searched recursively), local or s3://, gs://")
    domains: list[str] = option([], help="read only these domains (empty = every domain found)")
    domain: str = option(
        "", help=f"online_retail only: the domain name to give (default {DEFAULT_RETAIL_DOMAIN})"
    )
    title_columns: list[str] = option(
        list(RECBOLE_TITLE_COLUMNS), help="recbole only: .item fields tried in order for an item's title"
    )
    brand_columns: list[str] = option(
        list(RECBOLE_BRAND_COLUMNS), help="recbole only: .item fields tried in order for its brand ([] = none)"
    )
    category_columns: list[str] = option(
        list(RECBOLE_CATEGORY_COLUMNS),
        help="recbole only: .item fields tried in order for its category (of a comma-separated path, the last)",
    )

    def validate(self) -> None:
        if self.format not in FORMATS:
            raise CPRecError(f"unknown source format {self.format!r} (expected one of {', '.join(FORMATS)})")
        if not self.path:
            raise CPRecError(f"source of format {self.format} has no path")
        if self.domain and self.format != "online_retail":
            raise CPRecError(
                f"source {self.path}: `domain` applies to online_retail only; use `domains` to select "
                f"{self.format} domains"
            )
        if self.domains and self.format == "online_retail":
            raise CPRecError(f"source {self.path}: online_retail has one domain; set `domain`, not `domains`")
        for name, default in _COLUMN_OPTIONS.items():
            columns = getattr(self, name)
            if not isinstance(columns, list) or not all(isinstance(c, str) and c.strip() for c in columns):
                raise CPRecError(f"source {self.path}: `{name}` must be a list of RecBole field names")
            if self.format != "recbole" and tuple(columns) != default:
                raise CPRecError(f"source {self.path}: `{name}` applies to recbole only")
        if not self.title_columns:
            raise CPRecError(f"source {self.path}: `title_columns` is empty, but every item needs a title")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SourceConfig:
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise CPRecError(f"source {values.get('path', '?')}: unknown keys {sorted(unknown)}")
        return cls(**values)
