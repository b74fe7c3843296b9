"""Readers of the four source formats (DESIGN.md §2) as streaming Ray Data datasets.

`read_events` and `read_items` return one row per source line, each with its `source_file`, 1-based
`line` and a `status`:
  'ok'     a parsed record (`reason` and `record` are null);
  'reject' bad input: malformed line, missing or mistyped required field, non-UTF-8 bytes, impossible
           timestamp. `reason` is a short code (`missing_field:user_id`), `record` the raw line;
  'skip'   a valid record that is not an interaction (Online Retail cancellations, guest rows without
           a CustomerID, postage and fee lines, blank lines), kept with its reason and raw line.
Nothing is dropped, so the build can account for every input line. Checks that need the whole
input (unknown items, duplicates) belong to cleaning, not here.

The per-format line parsers are pure functions (`parse_*`) that return a tuple or raise `Reject` /
`Skip`; the Ray datasource only splits files into lines and calls them. Files are opened through
pyarrow filesystems (local, s3://, gs://), gzip is inferred from the `.gz` extension, and reads
stream block by block and run in parallel over files.

Online Retail descriptions that are all upper case (as in the real file) are title-cased
("WHITE HANGING HEART T-LIGHT HOLDER" -> "White Hanging Heart T-Light Holder") so that the same
words read the same on both platforms; descriptions with any lower-case letter are kept as written.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

import pyarrow as pa

from cprec.core import schemas, storage
from cprec.core.config import option
from cprec.core.errors import CPRecError

FORMATS = ("amazon2023", "amazon2018", "recbole", "online_retail")
ROLES = ("events", "items")
STATUSES = ("ok", "reject", "skip")

_OUTCOME_FIELDS = [("status", pa.string()), ("reason", pa.string()), ("record", pa.string())]
EVENT_ROWS = pa.schema([*schemas.RAW_EVENTS, *_OUTCOME_FIELDS])
ITEM_ROWS = pa.schema([*schemas.RAW_ITEMS, *_OUTCOME_FIELDS])

# Timestamps outside [1990-01-01, 2100-01-01) once normalised to Unix ms are impossible for a
# recommendation log; most often they are seconds mistaken for milliseconds or the reverse.
MIN_TIMESTAMP_MS = 631_152_000_000
MAX_TIMESTAMP_MS = 4_102_444_800_000

# Online Retail StockCodes that are charges and adjustments, not products.
RETAIL_NON_PRODUCT_CODES = frozenset(
    {"POST", "DOT", "C2", "M", "D", "S", "B", "CRUK", "PADS", "BANK CHARGES", "AMAZONFEE", "ADJUST"}
)
DEFAULT_RETAIL_DOMAIN = "Online_Retail"

# What the line parsers return, in order, for each role.
EVENT_VALUES = ("user_id", "item_id", "timestamp")
ITEM_VALUES = ("item_id", "title", "brand", "category", "description")

ROWS_PER_BLOCK = 32_768
READ_TASK_CPUS = 0.5  # fractional, so reads share a small node with the stages after them


@dataclass
class SourceConfig:
    format: str = option("amazon2023", help="source format: amazon2023, amazon2018, recbole or online_retail")
    path: str = option("", help="a file or a directory (searched recursively), local or s3://, gs://")
    domains: list[str] = option([], help="read only these domains (empty = every domain found)")
    domain: str = option(
        "", help=f"online_retail only: the domain name to give (default {DEFAULT_RETAIL_DOMAIN})"
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

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SourceConfig:
        unknown = set(values) - {"format", "path", "domains", "domain"}
        if unknown:
            raise CPRecError(f"source {values.get('path', '?')}: unknown keys {sorted(unknown)}")
        return cls(**values)


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
    except ValueError:
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
        number = float(value)
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


def _text(value: Any) -> str | None:
    """Optional free text: strings as they are, lists joined (Amazon keeps descriptions as lists)."""
    if value is None:
        return None
    if isinstance(value, list):
        parts = [str(v).strip() for v in value if v is not None and str(v).strip()]
        return " ".join(parts) or None
    if isinstance(value, (dict, bool)):
        return None
    text = str(value).strip()
    return text or None


def _leaf(value: Any) -> str | None:
    """The leaf (last non-blank) of a category path given as a list, or the string itself."""
    if isinstance(value, list):
        leaves = [str(v).strip() for v in value if v is not None and str(v).strip()]
        return leaves[-1] if leaves else None
    return _text(value)


# ---------------------------------------------------------------------------- Amazon 2023 / 2018
# Events parse to (user_id, item_id, timestamp_ms); items to (item_id, title, brand, category, description).


def parse_amazon2023_event(line: str) -> tuple[str, str, int]:
    record = _json_object(line)
    return (
        _required_id(record, "user_id"),
        _required_id(record, "parent_asin"),
        _required_timestamp(record, "timestamp", 1),
    )


def parse_amazon2023_item(line: str) -> tuple[str, str | None, str | None, str | None, str | None]:
    record = _json_object(line)
    details = record.get("details") if isinstance(record.get("details"), dict) else {}
    return (
        _required_id(record, "parent_asin"),
        _text(record.get("title")),
        _text(record.get("store")) or _text(details.get("Brand")),
        _leaf(record.get("categories")),
        _text(record.get("description")),
    )


def parse_amazon2018_event(line: str) -> tuple[str, str, int]:
    record = _json_object(line)
    return (
        _required_id(record, "reviewerID"),
        _required_id(record, "asin"),
        _required_timestamp(record, "unixReviewTime", 1000),
    )


def parse_amazon2018_item(line: str) -> tuple[str, str | None, str | None, str | None, str | None]:
    record = _json_object(line)
    return (
        _required_id(record, "asin"),
        _text(record.get("title")),
        _text(record.get("brand")),
        _leaf(record.get("category")),
        _text(record.get("description")),
    )


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


def make_recbole_item_parser(columns: dict[str, int], path: str = "") -> Callable[[str], tuple]:
    if "item_id" not in columns:
        raise CPRecError(f"{path}: RecBole .item header lacks item_id (have {', '.join(columns)})")
    width = len(columns)

    def parse(line: str) -> tuple[str, str | None, str | None, str | None, str | None]:
        cells = _cells(line, width)
        item = _cell(cells, columns, "item_id")
        if item is None:
            raise Reject("missing_field:item_id")
        categories = _cell(cells, columns, "categories", "category", "genre")
        # RecBole token_seq cells are space-separated tokens; multi-word category paths are comma-separated.
        leaf = categories.split(",")[-1].strip(" '\"[]") if categories and "," in categories else categories
        return (
            item,
            _cell(cells, columns, "title", "movie_title", "name"),
            _cell(cells, columns, "brand", "store"),
            leaf or None,
            _cell(cells, columns, "description"),
        )

    return parse


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
    cells = next(csv.reader([header.lstrip("\ufeff")]))
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
    def parse(line: str) -> tuple[str, str | None, None, None, None]:
        cells = _retail_cells(line, columns)
        code = cells[columns["StockCode"]].strip()
        if not code:
            raise Reject("missing_field:StockCode")
        if code.upper() in RETAIL_NON_PRODUCT_CODES:
            raise Skip("non_product_code")
        return code, retail_title(cells[columns["Description"]]), None, None, None

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
        ("events", re.compile(r"^(?P<domain>.+?)(?:_5)?\.json" + _GZ)),
    ],
    "recbole": [
        ("items", re.compile(r"^(?P<domain>.+)\.item" + _GZ)),
        ("events", re.compile(r"^(?P<domain>.+)\.inter" + _GZ)),
    ],
    "online_retail": [("events", re.compile(r"^.+\.csv" + _GZ))],
}
_EXPECTED_NAMES = {
    "amazon2023": "<Domain>.jsonl[.gz] with meta_<Domain>.jsonl[.gz]",
    "amazon2018": "<Domain>[_5].json[.gz] with meta_<Domain>.json[.gz]",
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


def discover(source: SourceConfig) -> list[SourceFile]:
    """The files of a source, each with its role and domain, sorted by domain, role and path.

    Raises CPRecError for a missing path, a path without matching files, a requested domain that
    is not there, a domain with interactions but no item file, or two files for one domain and role.
    """
    source.validate()
    names = _EXPECTED_NAMES[source.format]
    files = storage.list_files(source.path)
    if source.format == "online_retail":
        domain = source.domain or DEFAULT_RETAIL_DOMAIN
        csvs = [path for path in files if classify("online_retail", os.path.basename(path))]
        if not csvs:
            raise CPRecError(f"no Online Retail files ({names}) under {source.path}")
        # One CSV serves both roles: its lines are interactions and its descriptions the catalogue.
        return [SourceFile(path, role, domain) for path in csvs for role in ROLES]

    found: dict[tuple[str, str], list[str]] = {}
    for path in files:
        kind = classify(source.format, os.path.basename(path))
        if kind:
            found.setdefault((kind[1], kind[0]), []).append(path)
    if not found:
        raise CPRecError(f"no {source.format} files ({names}) under {source.path}")
    domains = sorted({domain for domain, _ in found})
    wanted = source.domains or domains
    absent = [d for d in wanted if d not in domains]
    if absent:
        raise CPRecError(
            f"domain {absent[0]} not found in {source.format} source {source.path} (found: {', '.join(domains)})"
        )
    selected = []
    for domain in sorted(wanted):
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
    return selected


def line_parser(format: str, role: str, header: str | None, path: str = "") -> Callable[[str], tuple]:
    """The pure function that parses one data line of a `format` file in `role`."""
    if format == "amazon2023":
        return parse_amazon2023_event if role == "events" else parse_amazon2023_item
    if format == "amazon2018":
        return parse_amazon2018_event if role == "events" else parse_amazon2018_item
    if header is None:
        raise CPRecError(f"{path}: empty file, expected a header line")
    if format == "recbole":
        columns = recbole_columns(header, path)
        return (make_recbole_event_parser if role == "events" else make_recbole_item_parser)(columns, path)
    columns = retail_columns(header, path)
    return make_retail_event_parser(columns) if role == "events" else make_retail_item_parser(columns)


HEADER_FORMATS = ("recbole", "online_retail")


# ---------------------------------------------------------------------------- streaming rows


def _lines(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Lines (without the newline) of a byte stream read in chunks; a last unterminated line counts."""
    rest = b""
    for chunk in chunks:
        pieces = (rest + chunk).split(b"\n")
        rest = pieces.pop()
        yield from pieces
    if rest:
        yield rest


def _decode(raw: bytes) -> str | None:
    try:
        return raw.decode("utf-8").rstrip("\r")
    except UnicodeDecodeError:
        return None


def parse_lines(
    raw_lines: Iterator[bytes], format: str, role: str, domain: str, source_file: str
) -> Iterator[pa.Table]:
    """Tables of EVENT_ROWS or ITEM_ROWS for the lines of one file, `ROWS_PER_BLOCK` rows at a time."""
    schema = EVENT_ROWS if role == "events" else ITEM_ROWS
    value_names = EVENT_VALUES if role == "events" else ITEM_VALUES
    columns: dict[str, list[Any]] = {f.name: [] for f in schema}
    line_number = 0
    parse: Callable[[str], tuple] | None = None
    # Online Retail: a malformed line is reported once, by the events pass over the same file.
    quiet_rejects = format == "online_retail" and role == "items"

    def add(values: tuple | None, status: str, reason: str | None, record: str | None) -> None:
        for name, value in zip(value_names, values or (None,) * len(value_names)):
            columns[name].append(value)
        columns["domain"].append(domain)
        columns["source_file"].append(source_file)
        columns["line"].append(line_number)
        columns["status"].append(status)
        columns["reason"].append(reason)
        columns["record"].append(record)

    def flush() -> pa.Table:
        table = pa.table(columns, schema=schema)
        for values in columns.values():
            values.clear()
        return table

    for raw in raw_lines:
        line_number += 1
        text = _decode(raw)
        if format in HEADER_FORMATS and parse is None:
            header = text if text is not None else raw.decode("utf-8", "replace")
            parse = line_parser(format, role, header, source_file)
            continue
        if text is None:
            if not quiet_rejects:
                add(None, "reject", "non_utf8", raw.decode("utf-8", "backslashreplace"))
        elif not text.strip():
            if not quiet_rejects:
                add(None, "skip", "blank_line", text)
        else:
            if parse is None:
                parse = line_parser(format, role, None, source_file)
            try:
                add(parse(text), "ok", None, None)
            except Skip as skipped:
                add(None, "skip", str(skipped), text)
            except Reject as rejected:
                if not quiet_rejects:
                    add(None, "reject", str(rejected), text)
        if len(columns["line"]) >= ROWS_PER_BLOCK:
            yield flush()
    if format in HEADER_FORMATS and parse is None:
        raise CPRecError(f"{source_file}: empty file, expected a header line")
    if columns["line"]:
        yield flush()


def _read_file_lines(stream: Any, source_file: str) -> Iterator[bytes]:
    """Lines of an opened pyarrow stream; a truncated or corrupt gzip fails with the file's name."""

    def chunks() -> Iterator[bytes]:
        while True:
            try:
                chunk = stream.read(1 << 22)
            except (OSError, pa.ArrowException) as exc:
                raise CPRecError(f"cannot read {source_file}: {exc}".splitlines()[0]) from exc
            if not chunk:
                return
            yield chunk

    return _lines(chunks())


def _without_scheme(uri: str) -> str:
    return os.path.normpath(uri.split("://", 1)[-1])


def first_line(path: str) -> str | None:
    """The first line of a (possibly gzip) file, or None when it is empty."""
    fs, inner = storage.filesystem(path)
    compression = "gzip" if path.endswith(".gz") else None
    with fs.open_input_stream(inner, compression=compression) as stream:
        return next(_read_file_lines(stream, path), b"").decode("utf-8", "replace").rstrip("\r") or None


def _source_datasource_class() -> type:
    """Defined lazily so importing this module does not import Ray."""
    from ray.data.datasource import FileBasedDatasource

    class SourceDatasource(FileBasedDatasource):
        """One source's files of one role; each file is split into lines and parsed by its format."""

        def __init__(self, files: list[SourceFile], format: str, role: str):
            super().__init__([f.path for f in files])
            self._format = format
            self._role = role
            # Ray hands `_read_stream` the path without its scheme; map it back to the listed URI.
            self._files = {_without_scheme(f.path): f for f in files}

        def _read_stream(self, f: Any, path: str) -> Iterator[pa.Table]:
            source = self._files[_without_scheme(path)]
            lines = _read_file_lines(f, source.path)
            yield from parse_lines(lines, self._format, self._role, source.domain, source.path)

    return SourceDatasource


def _read(sources: list[SourceConfig], role: str) -> Any:
    import ray

    if not sources:
        raise CPRecError("no sources given")
    datasource_class = _source_datasource_class()
    datasets = []
    for source in sources:
        files = [f for f in discover(source) if f.role == role]
        if source.format in HEADER_FORMATS:
            for file in files:  # a bad header fails here, on the driver, with the file's name
                line_parser(source.format, role, first_line(file.path), file.path)
        datasource = datasource_class(files, source.format, role)
        datasets.append(ray.data.read_datasource(datasource, num_cpus=READ_TASK_CPUS))
    return datasets[0] if len(datasets) == 1 else datasets[0].union(*datasets[1:])


def read_events(sources: list[SourceConfig]) -> Any:
    """A Ray Dataset of EVENT_ROWS (RAW_EVENTS + status, reason, record), one row per source line."""
    return _read(sources, "events")


def read_items(sources: list[SourceConfig]) -> Any:
    """A Ray Dataset of ITEM_ROWS (RAW_ITEMS + status, reason, record), one row per source line.

    Online Retail has no catalogue file: every product line of the CSV yields an item row (the
    build keeps the first per item id); its malformed lines are reported by `read_events` only.
    """
    return _read(sources, "items")
