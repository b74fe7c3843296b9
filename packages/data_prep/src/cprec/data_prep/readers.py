"""The four source formats (docs/design.md §2): discovery of their files and the reference line parsers.

`scan` reads the files; every source line becomes one row of EVENT_ROWS or ITEM_ROWS with its
`source_file`, 1-based `line` and a `status`:
  'ok'     a parsed record (`reason` and `record` are null);
  'reject' bad input: malformed line, missing or mistyped required field, non-UTF-8 bytes, impossible
           timestamp. `reason` is a short code (`missing_field:user_id`), `record` the raw line;
  'skip'   a valid record that is not an interaction (Online Retail cancellations, guest rows without
           a CustomerID, postage and fee lines, blank lines), kept with its reason and raw line.
Nothing is dropped, so the build can account for every input line. Checks that need the whole
input (unknown items, duplicates) belong to cleaning, not here.

The per-format line parsers are pure functions (`parse_*`) that return a tuple or raise `Reject` /
`Skip`: they define what a line means. `scan` parses most lines in DuckDB and hands these
functions every line whose shape its fast path does not cover, so they decide every reason code.

Item rows carry the metadata's rating count and average rating where the format has them (Amazon
2023's `rating_number` and `average_rating`); the other formats have none and give nulls. Like an
optional text of the wrong shape, a malformed one (a string, a negative count, an average off the
1-5 star scale) is left out as null, never a reject.

Online Retail descriptions that are all upper case (as in the real file) are title-cased
("WHITE HANGING HEART T-LIGHT HOLDER" -> "White Hanging Heart T-Light Holder") so that the same
words read the same on both platforms; descriptions with any lower-case letter are kept as written.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import posixpath
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

import pyarrow as pa

from cprec.core import schemas, storage
from cprec.core.errors import CPRecError
from cprec.core.sources import (
    DEFAULT_RETAIL_DOMAIN,
    RECBOLE_BRAND_COLUMNS,
    RECBOLE_CATEGORY_COLUMNS,
    RECBOLE_TITLE_COLUMNS,
    SourceConfig,
)

log = logging.getLogger("cprec.data_prep.readers")

ROLES = ("events", "items")
STATUSES = ("ok", "reject", "skip")

_OUTCOME_FIELDS = [("status", pa.string()), ("reason", pa.string()), ("record", pa.string())]
EVENT_ROWS = pa.schema([*schemas.RAW_EVENTS, *_OUTCOME_FIELDS])
ITEM_ROWS = pa.schema([*schemas.RAW_ITEMS, *_OUTCOME_FIELDS])

# Timestamps outside [1990-01-01, 2100-01-01) once normalised to Unix ms are impossible for a
# recommendation log; most often they are seconds mistaken for milliseconds or the reverse.
MIN_TIMESTAMP_MS = 631_152_000_000
MAX_TIMESTAMP_MS = 4_102_444_800_000

# An average rating off the 1-5 star scale of the dumps is malformed.
MIN_STARS, MAX_STARS = 1.0, 5.0

# Online Retail StockCodes that are charges and adjustments, not products.
RETAIL_NON_PRODUCT_CODES = frozenset(
    {"POST", "DOT", "C2", "M", "D", "S", "B", "CRUK", "PADS", "BANK CHARGES", "AMAZONFEE", "ADJUST"}
)

# The .item field of a RecBole item's description (the title, brand and category fields are options
# of the source, with core.sources' defaults).
RECBOLE_DESCRIPTION_COLUMN = "description"

# What the line parsers return, in order, for each role.
EVENT_VALUES = ("user_id", "item_id", "timestamp")
ITEM_VALUES = ("item_id", "title", "brand", "category", "description", "rating_number", "average_rating")
# Formats whose metadata has no rating count or average end their item values with these.
NO_RATINGS = (None, None)


class SourceFile(NamedTuple):
    path: str  # URI as listed
    role: str  # 'events' or 'items'
    domain: str


class Reject(Exception):
    """A line that is bad input; the message is the reason code."""


class Skip(Exception):
    """A valid line that is not an interaction; the message is the reason code."""


# ---------------------------------------------------------------------------- field helpers


def _json_object(line: str) -> dict[str, Any]:
    try:
        value = json.loads(line)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than Python's stack
        raise Reject("malformed_json") from None
    if not isinstance(value, dict):
        raise Reject("malformed_json")
    return value


def _required_id(record: dict[str, Any], key: str) -> str:
    value = record.get(key)
    if value is None or value == "":
        raise Reject(f"missing_field:{key}")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise Reject(f"mistyped_field:{key}")
    text = str(value).strip()
    if not text:
        raise Reject(f"missing_field:{key}")
    return text


def _number(value: Any, key: str) -> float:
    """A JSON number, or a string holding one (some dumps quote numbers)."""
    if isinstance(value, bool):
        raise Reject(f"mistyped_field:{key}")
    if isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:  # an integer beyond float range, like a string that parses to inf below
            raise Reject(f"mistyped_field:{key}") from None
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise Reject(f"mistyped_field:{key}") from None
    else:
        raise Reject(f"mistyped_field:{key}")
    if not math.isfinite(number):
        raise Reject(f"mistyped_field:{key}")
    return number


def _checked_ms(milliseconds: float) -> int:
    if not MIN_TIMESTAMP_MS <= milliseconds < MAX_TIMESTAMP_MS:
        raise Reject("impossible_timestamp")
    return int(milliseconds)


def _required_timestamp(record: dict[str, Any], key: str, unit_ms: int) -> int:
    if record.get(key) is None or record.get(key) == "":
        raise Reject(f"missing_field:{key}")
    return _checked_ms(_number(record[key], key) * unit_ms)


def _scalar_text(value: Any) -> str | None:
    """A string or number as stripped text; None for null, booleans, objects and lists (no text)."""
    if value is None or isinstance(value, (dict, list, bool)):
        return None
    return str(value).strip() or None


def _text(value: Any) -> str | None:
    """Optional free text: strings as they are, lists joined (Amazon keeps descriptions as lists).

    Objects, booleans and nested lists carry no text, at the top level or inside a list."""
    if isinstance(value, list):
        return " ".join(p for p in map(_scalar_text, value) if p) or None
    return _scalar_text(value)


def _leaf(value: Any) -> str | None:
    """The leaf (last non-blank) of a category path given as a list, or the string itself."""
    if isinstance(value, list):
        leaves = [p for p in map(_scalar_text, value) if p]
        return leaves[-1] if leaves else None
    return _text(value)


def _count(value: Any) -> int | None:
    """An optional count: a non-negative JSON integer that fits int64, else None (a string, a float,
    a negative number is left out like a missing field, as a malformed optional text is)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        return None
    return value


def _average_rating(value: Any) -> float | None:
    """An optional average star rating: a JSON number on the 1-5 star scale, else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if MIN_STARS <= number <= MAX_STARS else None


def _utf8(line: str, values: tuple) -> tuple:
    """`values`, unless JSON's escapes put a lone UTF-16 surrogate (`\\ud800`) in one: no UTF-8
    text can hold it, so the line is rejected as non-UTF-8 like undecodable bytes."""
    if "\\ud" in line or "\\uD" in line:
        for value in values:
            if isinstance(value, str):
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError:
                    raise Reject("non_utf8") from None
    return values


# ---------------------------------------------------------------------------- Amazon 2023 / 2018
# Events parse to (user_id, item_id, timestamp_ms); items to ITEM_VALUES: (item_id, title, brand,
# category, description, rating_number, average_rating).


def parse_amazon2023_event(line: str) -> tuple[str, str, int]:
    record = _json_object(line)
    values = (
        _required_id(record, "user_id"),
        _required_id(record, "parent_asin"),
        _required_timestamp(record, "timestamp", 1),
    )
    return _utf8(line, values)


def parse_amazon2023_item(line: str) -> tuple:
    record = _json_object(line)
    details = record.get("details") if isinstance(record.get("details"), dict) else {}
    values = (
        _required_id(record, "parent_asin"),
        _text(record.get("title")),
        _text(record.get("store")) or _text(details.get("Brand")),
        _leaf(record.get("categories")),
        _text(record.get("description")),
        _count(record.get("rating_number")),
        _average_rating(record.get("average_rating")),
    )
    return _utf8(line, values)


def parse_amazon2018_event(line: str) -> tuple[str, str, int]:
    record = _json_object(line)
    values = (
        _required_id(record, "reviewerID"),
        _required_id(record, "asin"),
        _required_timestamp(record, "unixReviewTime", 1000),
    )
    return _utf8(line, values)


def parse_amazon2018_item(line: str) -> tuple:
    record = _json_object(line)
    values = (
        _required_id(record, "asin"),
        _text(record.get("title")),
        _text(record.get("brand")),
        _leaf(record.get("category")),
        _text(record.get("description")),
        *NO_RATINGS,
    )
    return _utf8(line, values)


# ---------------------------------------------------------------------------- RecBole atomic files


def recbole_columns(header: str, path: str = "") -> dict[str, int]:
    """Field name -> column index from a header like `user_id:token\\titem_id:token\\ttimestamp:float`."""
    columns = {}
    for index, cell in enumerate(header.rstrip("\r\n").split("\t")):
        name, _, kind = cell.strip().partition(":")
        if not kind:
            raise CPRecError(f"{path}: RecBole header cell {cell!r} is not of the form field:type")
        columns[name] = index
    return columns


def _cells(line: str, width: int) -> list[str]:
    cells = line.rstrip("\r\n").split("\t")
    if len(cells) != width:
        raise Reject(f"wrong_column_count:{len(cells)}")
    return cells


def _cell(cells: list[str], columns: dict[str, int], *names: str) -> str | None:
    for name in names:
        if name in columns:
            value = cells[columns[name]].strip()
            return value or None
    return None


def make_recbole_event_parser(
    columns: dict[str, int], path: str = ""
) -> Callable[[str], tuple[str, str, int]]:
    missing = [name for name in ("user_id", "item_id", "timestamp") if name not in columns]
    if missing:
        raise CPRecError(
            f"{path}: RecBole .inter header lacks {', '.join(missing)} (have {', '.join(columns)})"
        )
    width = len(columns)

    def parse(line: str) -> tuple[str, str, int]:
        cells = _cells(line, width)
        user, item, seconds = (_cell(cells, columns, name) for name in ("user_id", "item_id", "timestamp"))
        for name, value in (("user_id", user), ("item_id", item), ("timestamp", seconds)):
            if value is None:
                raise Reject(f"missing_field:{name}")
        return user, item, _checked_ms(_number(seconds, "timestamp") * 1000)  # type: ignore[return-value]

    return parse


def make_recbole_item_parser(
    columns: dict[str, int],
    path: str = "",
    title_columns: Sequence[str] = RECBOLE_TITLE_COLUMNS,
    brand_columns: Sequence[str] = RECBOLE_BRAND_COLUMNS,
    category_columns: Sequence[str] = RECBOLE_CATEGORY_COLUMNS,
) -> Callable[[str], tuple]:
    """Of each `*_columns` list, the first field the header has gives that part of the item text."""
    if "item_id" not in columns:
        raise CPRecError(f"{path}: RecBole .item header lacks item_id (have {', '.join(columns)})")
    if not any(name in columns for name in title_columns):
        raise CPRecError(
            f"{path}: RecBole .item header has no title field ({', '.join(title_columns)}; have "
            f"{', '.join(columns)}): set the source's title_columns"
        )
    width = len(columns)

    def parse(line: str) -> tuple:
        cells = _cells(line, width)
        item = _cell(cells, columns, "item_id")
        if item is None:
            raise Reject("missing_field:item_id")
        categories = _cell(cells, columns, *category_columns)
        # RecBole token_seq cells are space-separated tokens; multi-word category paths are comma-separated.
        leaf = categories.split(",")[-1].strip(" '\"[]") if categories and "," in categories else categories
        return (
            item,
            _cell(cells, columns, *title_columns),
            _cell(cells, columns, *brand_columns),
            leaf or None,
            _cell(cells, columns, RECBOLE_DESCRIPTION_COLUMN),
            *NO_RATINGS,
        )

    return parse


def _recbole_item_fields_used(columns: dict[str, int], source: SourceConfig) -> list[str]:
    """The fields of an .item header that `make_recbole_item_parser` reads with `source`'s options."""
    chosen = [
        next((name for name in names if name in columns), None)
        for names in (source.title_columns, source.brand_columns, source.category_columns)
    ]
    return [name for name in ("item_id", *chosen, RECBOLE_DESCRIPTION_COLUMN) if name in columns]


# ---------------------------------------------------------------------------- Online Retail CSV

RETAIL_COLUMNS = (
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
)
_RETAIL_DATE = re.compile(
    r"^(?:(?P<m>\d{1,2})/(?P<d>\d{1,2})/(?P<y>\d{4})|(?P<Y>\d{4})-(?P<M>\d{1,2})-(?P<D>\d{1,2}))"
    r"[ T](?P<H>\d{1,2}):(?P<min>\d{2})(?::(?P<s>\d{2}))?$"
)
_CAPITALISE = re.compile(r"(^|[\s\-(/&])([a-z])")


def retail_columns(header: str, path: str = "") -> dict[str, int]:
    """Column name -> index from the CSV header; the Online Retail II names (Invoice, Price, Customer ID) work too."""
    try:
        cells = next(csv.reader([header.lstrip("\ufeff")]))
    except csv.Error as exc:
        raise CPRecError(f"{path}: Online Retail CSV header is not CSV: {exc}") from None
    aliases = {"Invoice": "InvoiceNo", "Price": "UnitPrice", "Customer ID": "CustomerID"}
    columns = {aliases.get(c.strip(), c.strip()): i for i, c in enumerate(cells)}
    missing = [c for c in RETAIL_COLUMNS if c not in columns]
    if missing:
        raise CPRecError(f"{path}: Online Retail CSV header lacks {', '.join(missing)}")
    return columns


def retail_timestamp(value: str) -> int:
    """'12/1/2010 8:26' (month/day/year, as in the real file) or ISO '2010-12-01 08:26:00' -> Unix ms (UTC)."""
    match = _RETAIL_DATE.match(value.strip())
    if not match:
        raise Reject("mistyped_field:InvoiceDate")
    g = match.groupdict()
    year, month, day = (
        (int(g["y"]), int(g["m"]), int(g["d"])) if g["y"] else (int(g["Y"]), int(g["M"]), int(g["D"]))
    )
    try:
        moment = datetime(year, month, day, int(g["H"]), int(g["min"]), int(g["s"] or 0), tzinfo=UTC)
    except ValueError:
        raise Reject("impossible_timestamp") from None
    return _checked_ms(moment.timestamp() * 1000)


def retail_title(description: str | None) -> str | None:
    """All-upper-case descriptions become title case, so words match the marketplace's spelling."""
    if description is None:
        return None
    text = " ".join(description.split())
    if not text:
        return None
    if any(c.islower() for c in text):
        return text
    return _CAPITALISE.sub(lambda m: m.group(1) + m.group(2).upper(), text.lower())


def _retail_cells(line: str, columns: dict[str, int]) -> list[str]:
    try:
        cells = next(csv.reader([line]))
    except (csv.Error, StopIteration):
        raise Reject("malformed_csv") from None
    if len(cells) != len(columns):
        raise Reject(f"wrong_column_count:{len(cells)}")
    return cells


def _customer_id(value: str) -> str:
    # Spreadsheet exports write CustomerID as a float ('17850.0').
    text = value.strip()
    return text[:-2] if text.endswith(".0") and text[:-2].isdigit() else text


def make_retail_event_parser(columns: dict[str, int]) -> Callable[[str], tuple[str, str, int]]:
    def parse(line: str) -> tuple[str, str, int]:
        cells = _retail_cells(line, columns)
        get = {name: cells[columns[name]].strip() for name in RETAIL_COLUMNS}
        for name in ("InvoiceNo", "StockCode", "Quantity", "InvoiceDate"):
            if not get[name]:
                raise Reject(f"missing_field:{name}")
        quantity = _number(get["Quantity"], "Quantity")
        timestamp = retail_timestamp(get["InvoiceDate"])
        if get["InvoiceNo"].upper().startswith("C"):
            raise Skip("cancellation")
        if get["StockCode"].upper() in RETAIL_NON_PRODUCT_CODES:
            raise Skip("non_product_code")
        if quantity <= 0:
            raise Skip("non_positive_quantity")
        if not get["CustomerID"]:
            raise Skip("no_customer_id")
        return _customer_id(get["CustomerID"]), get["StockCode"], timestamp

    return parse


def make_retail_item_parser(columns: dict[str, int]) -> Callable[[str], tuple]:
    def parse(line: str) -> tuple:
        cells = _retail_cells(line, columns)
        code = cells[columns["StockCode"]].strip()
        if not code:
            raise Reject("missing_field:StockCode")
        if code.upper() in RETAIL_NON_PRODUCT_CODES:
            raise Skip("non_product_code")
        return code, retail_title(cells[columns["Description"]]), None, None, None, *NO_RATINGS

    return parse


# ---------------------------------------------------------------------------- discovery

_GZ = r"(?:\.gz)?$"
_NAME_PATTERNS: dict[str, list[tuple[str, re.Pattern[str]]]] = {
    "amazon2023": [
        ("items", re.compile(r"^meta_(?P<domain>.+)\.jsonl" + _GZ)),
        ("events", re.compile(r"^(?P<domain>.+)\.jsonl" + _GZ)),
    ],
    "amazon2018": [
        ("items", re.compile(r"^meta_(?P<domain>.+)\.json" + _GZ)),
        # 2018: Books.json.gz, Books_5.json.gz; 2014: reviews_Books_5.json.gz
        ("events", re.compile(r"^(?:reviews_)?(?P<domain>.+?)(?:_5)?\.json" + _GZ)),
    ],
    "recbole": [
        ("items", re.compile(r"^(?P<domain>.+)\.item" + _GZ)),
        ("events", re.compile(r"^(?P<domain>.+)\.inter" + _GZ)),
    ],
    "online_retail": [("events", re.compile(r"^.+\.csv" + _GZ))],
}
_EXPECTED_NAMES = {
    "amazon2023": "<Domain>.jsonl[.gz] with meta_<Domain>.jsonl[.gz]",
    "amazon2018": "[reviews_]<Domain>[_5].json[.gz] with meta_<Domain>.json[.gz]",
    "recbole": "<name>.inter[.gz] with <name>.item[.gz]",
    "online_retail": "*.csv[.gz]",
}


def classify(format: str, filename: str) -> tuple[str, str] | None:
    """(role, domain) of a file name in `format`, or None when the name is not part of that format."""
    for role, pattern in _NAME_PATTERNS[format]:
        match = pattern.match(filename)
        if match:
            return role, match.groupdict().get("domain", "")
    return None


class SkippedFile(NamedTuple):
    path: str
    reason: str


class Discovery(NamedTuple):
    files: list[SourceFile]  # what the source reads, sorted by domain, role and path
    skipped: list[SkippedFile]  # files under its path that are not its data, sorted by path


def discover(source: SourceConfig) -> list[SourceFile]:
    """The files of a source, each with its role and domain, sorted by domain, role and path
    (`discovery(source).files`)."""
    return discovery(source).files


def discovery(source: SourceConfig) -> Discovery:
    """The files of a source and the files under its path that it skips, each skip logged once.

    A file whose name fits the format is data only when its domain has both files (`Books.json.gz`
    beside `meta_Books.json.gz`): side files such as stats.json, world.json or a tokenizer's
    vocab.json pair with nothing and are skipped, like names that do not fit at all. Files in
    hidden or underscore-prefixed folders below the path are ignored without a word, as
    `storage.list_files` ignores such files.

    Raises CPRecError for a missing path, a path without matching files, a requested domain that
    is not there, two files for one domain and role, and a domain with only one of its files when
    `domains` names it or when no domain has both.
    """
    source.validate()
    names = _EXPECTED_NAMES[source.format]
    found: dict[tuple[str, str], list[str]] = {}
    skipped = []
    for path in _listed_files(source.path):
        kind = classify(source.format, os.path.basename(path))
        if kind is None:
            skipped.append(SkippedFile(path, f"name fits no {source.format} pattern ({names})"))
        else:
            found.setdefault((kind[1], kind[0]), []).append(path)

    if source.format == "online_retail":
        csvs = found.get(("", "events"), [])
        if not csvs:
            raise CPRecError(f"no Online Retail files ({names}) under {source.path}")
        domain = source.domain or DEFAULT_RETAIL_DOMAIN
        # One CSV serves both roles: its lines are interactions and its descriptions the catalogue.
        return _discovered([SourceFile(path, role, domain) for path in csvs for role in ROLES], skipped)

    if not found:
        raise CPRecError(f"no {source.format} files ({names}) under {source.path}")
    domains = {domain for domain, _ in found}
    paired = sorted(d for d in domains if all((d, role) in found for role in ROLES))
    # When nothing pairs, the first domain's one-sided error below says why.
    wanted = sorted(source.domains or paired or domains)
    absent = [d for d in wanted if d not in domains]
    if absent:
        raise CPRecError(
            f"domain {absent[0]} not found in {source.format} source {source.path} "
            f"(found: {', '.join(paired) or 'no domain with both files'})"
        )
    for domain in sorted(domains - set(wanted) - set(paired)):
        missing = "item" if (domain, "items") not in found else "interactions"
        for paths in (found.get((domain, role), []) for role in ROLES):
            skipped.extend(SkippedFile(path, f"no {missing} file for domain {domain}") for path in paths)

    selected = []
    for domain in wanted:
        for role in ROLES:
            paths = found.get((domain, role), [])
            if len(paths) > 1:
                raise CPRecError(
                    f"{len(paths)} {role} files for domain {domain}: {', '.join(paths)}; keep one"
                )
            if not paths and role == "items":
                raise CPRecError(
                    f"domain {domain} in {source.path} has interactions but no item file ({names}): "
                    "item text is required"
                )
            if not paths:
                raise CPRecError(f"domain {domain} in {source.path} has an item file but no interactions")
            selected.append(SourceFile(paths[0], role, domain))
    return _discovered(selected, skipped)


_LOGGED_SKIPS: set[SkippedFile] = set()  # discovery runs more than once per build (per role, per step)


def _discovered(files: list[SourceFile], skipped: list[SkippedFile]) -> Discovery:
    skipped = sorted(skipped)
    for skip in skipped:
        if skip not in _LOGGED_SKIPS:
            _LOGGED_SKIPS.add(skip)
            log.warning("skipping %s: %s", skip.path, skip.reason)
    return Discovery(files, skipped)


def _listed_files(path: str) -> list[str]:
    """`storage.list_files(path)` less the files in hidden or underscore-prefixed folders below
    `path` (scratch space, caches, version control)."""
    root = storage.filesystem(path)[1]

    def hidden(file: str) -> bool:
        relative = posixpath.relpath(file if storage.is_local(file) else file.split("://", 1)[1], root)
        folders = relative.split("/")[:-1]
        return not relative.startswith("..") and any(f.startswith((".", "_")) for f in folders)

    return [file for file in storage.list_files(path) if not hidden(file)]


def ignored_columns(source: SourceConfig) -> dict[str, list[str]]:
    """Per item file of a RecBole source (its path as discovered), the header fields that its items
    do not read with the source's `*_columns` options, in header order; {} for the other formats,
    whose fields are fixed."""
    if source.format != "recbole":
        return {}
    ignored = {}
    for file in discover(source):
        if file.role == "items":
            columns = recbole_columns(header_line(file.path), file.path)
            used = _recbole_item_fields_used(columns, source)
            ignored[file.path] = [name for name in columns if name not in used]
    return ignored


MAX_HEADER_BYTES = 1 << 20


def header_line(path: str) -> str:
    """The first line of a (possibly gzip) file, without a UTF-8 byte-order mark."""
    fs, inner = storage.filesystem(path)
    blocks: list[bytes] = []
    try:
        with fs.open_input_stream(inner, compression="gzip" if path.endswith(".gz") else None) as stream:
            while not blocks or b"\n" not in blocks[-1]:
                block = stream.read(1 << 16)
                if not block:
                    break
                blocks.append(block)
                if sum(map(len, blocks)) > MAX_HEADER_BYTES:
                    raise CPRecError(f"{path}: first line over {MAX_HEADER_BYTES} bytes; expected a header")
    except (OSError, pa.ArrowException) as exc:
        raise CPRecError(f"cannot read {path}: {exc}".splitlines()[0]) from exc
    line = b"".join(blocks).split(b"\n", 1)[0].removeprefix(b"\xef\xbb\xbf")
    header = line.decode("utf-8", "replace").rstrip("\r")
    if not header:
        raise CPRecError(f"{path}: empty file, expected a header line")
    return header


def line_parser(
    format: str, role: str, header: str | None, path: str = "", source: SourceConfig | None = None
) -> Callable[[str], tuple]:
    """The pure function that parses one data line of a `format` file in `role`; `source`, when
    given, supplies its options (RecBole item columns), else the defaults apply.

    The function takes a line decoded from UTF-8 (the reader rejects undecodable ones as
    `non_utf8`) and returns a tuple or raises Reject or Skip, whatever the line holds."""
    if format == "amazon2023":
        return parse_amazon2023_event if role == "events" else parse_amazon2023_item
    if format == "amazon2018":
        return parse_amazon2018_event if role == "events" else parse_amazon2018_item
    if header is None:
        raise CPRecError(f"{path}: empty file, expected a header line")
    if format == "recbole":
        columns = recbole_columns(header, path)
        if role == "events":
            return make_recbole_event_parser(columns, path)
        options = (source.title_columns, source.brand_columns, source.category_columns) if source else ()
        return make_recbole_item_parser(columns, path, *options)
    columns = retail_columns(header, path)
    return make_retail_event_parser(columns) if role == "events" else make_retail_item_parser(columns)


HEADER_FORMATS = ("recbole", "online_retail")
