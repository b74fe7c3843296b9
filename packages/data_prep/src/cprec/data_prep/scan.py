"""Source files into the build's scratch tables, parsed in native code.

A scan unit is one file, or a byte range of a large uncompressed line-based file. A Ray task per
unit reads it in large chunks (a second thread reads and decompresses the next chunk while this
one is parsed), cuts each chunk into lines with numpy, and hands the lines to DuckDB as one Arrow
column. DuckDB's JSON functions (or `string_split` for RecBole's TSV) parse and validate every
line whose fields have the plain shapes of real dumps; every other line — malformed, a missing or
oddly typed field, an impossible timestamp, non-UTF-8 bytes — goes to the reference parser in
`readers` (`readers.line_parser`), which writes the exact reason. Both paths give the same values
for a line (tests/data_prep/test_scan.py holds them against each other), so the fast path only
decides how fast a line is read, never what it becomes.

Each task writes its rows straight into the scratch layout the build reads next, so no row
crosses the object store:
  events      `<work>/events/part=<p>/<unit>.parquet`, parsed events by hash partition of user,
              every other line (rejects and skips) in `part=-1`;
  items       `<work>/items_raw/<unit>.parquet` (`catalog_raw/` for text-only catalogues).
It returns how many records each file held, which is what the reject rate is counted against.

Online Retail is a CSV whose quoted fields may span lines; it is read record by record in Python
(it is one file of ~0.5M rows) and each record yields its interaction and its catalogue row in one
pass, so every line is counted once.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import logging
import queue
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cprec.core import storage
from cprec.core.errors import CPRecError
from cprec.core.sources import SourceConfig
from cprec.data_prep import cleaning, readers, sequences
from cprec.data_prep.readers import (
    EVENT_ROWS,
    EVENT_VALUES,
    ITEM_ROWS,
    ITEM_VALUES,
    MAX_STARS,
    MAX_TIMESTAMP_MS,
    MIN_STARS,
    MIN_TIMESTAMP_MS,
    Reject,
    Skip,
    SourceFile,
)

log = logging.getLogger("cprec.data_prep.scan")

CHUNK_BYTES = 64 << 20  # lines handed to DuckDB at a time; one chunk in flight per thread
SPLIT_BYTES = 256 << 20  # an uncompressed file larger than this is scanned as several units
BOM = b"\xef\xbb\xbf"

# What a unit produces: interactions (and, for Online Retail, the catalogue rows beside them),
# catalogue rows of an event source, or catalogue rows of a text-only catalogue.
EVENTS, ITEMS, CATALOG = "events", "items", "catalog"
OUTPUT_DIRS = {EVENTS: "events", ITEMS: "items_raw", CATALOG: "catalog_raw"}
# Item rows are written with their text (cleaning.with_item_text), computed here in parallel.
ITEM_ROWS_WITH_TEXT = ITEM_ROWS.append(pa.field("text", pa.string()))


@dataclass(frozen=True)
class ScanUnit:
    name: str  # unique within a build: its scratch files are named after it
    file: SourceFile
    source: SourceConfig
    purpose: str  # EVENTS, ITEMS or CATALOG
    header: str | None  # the header line of a RecBole or Online Retail file
    start: int = 0  # byte range [start, end) of the lines this unit owns; end None = to the end
    end: int | None = None
    first_line: int = 1  # number of the unit's first line in its file
    size: int = 0  # bytes to read as stored (compressed or not): the order tasks are started in


# ------------------------------------------------------------------------------------- planning


class ScanPlan(NamedTuple):
    units: list[ScanUnit]
    skipped_files: dict[str, str]  # files under a source path that are not its data: path -> why
    ignored_columns: dict[str, list[str]]  # RecBole item files: header fields the item text leaves out


def plan(sources: list[SourceConfig], catalogs: list[SourceConfig]) -> ScanPlan:
    """Every unit of a build, found and checked on the driver: a missing file, an unknown layout
    or a bad header fails here, before any task starts."""
    units: list[ScanUnit] = []
    skipped: dict[str, str] = {}
    ignored: dict[str, list[str]] = {}
    for source, is_catalog in [*((s, False) for s in sources), *((c, True) for c in catalogs)]:
        found = readers.discovery(source)
        skipped.update((f.path, f.reason) for f in found.skipped)
        ignored.update((path, names) for path, names in readers.ignored_columns(source).items() if names)
        for file in found.files:
            storage.safe_name(file.domain, f"source {source.path}: domain of {file.path}")  # becomes a path
            if source.format == "online_retail" and file.role == "items" and not is_catalog:
                continue  # the events unit of the same CSV writes its catalogue rows
            if is_catalog and file.role == "events":
                continue
            purpose = CATALOG if is_catalog else (EVENTS if file.role == "events" else ITEMS)
            header = None
            if source.format in readers.HEADER_FORMATS:
                header = readers.header_line(file.path)
                readers.line_parser(source.format, file.role, header, file.path, source)  # a bad header fails here
            units.extend(_split(f"{len(units):05d}", file, source, purpose, header))
    return ScanPlan(units, skipped, ignored)


def _split(name: str, file: SourceFile, source: SourceConfig, purpose: str, header: str | None) -> list[ScanUnit]:
    """One unit per file, or byte ranges of an uncompressed line-based file larger than SPLIT_BYTES
    (numbered later, by `number_lines`, since a range's first line number needs the lines before it)."""
    fs, inner = storage.filesystem(file.path)
    size = fs.get_file_info(inner).size or 0
    if _compression(file.path) or source.format == "online_retail" or size <= SPLIT_BYTES:
        return [ScanUnit(name, file, source, purpose, header, size=size)]
    bounds = list(range(0, size, SPLIT_BYTES)) + [size]
    return [
        ScanUnit(f"{name}-{i:03d}", file, source, purpose, header, start, end, first_line=0, size=end - start)
        for i, (start, end) in enumerate(itertools.pairwise(bounds))
    ]


def writes_items(unit: ScanUnit) -> bool:
    """Whether the unit writes catalogue rows of its event source (items_raw/)."""
    return unit.purpose == ITEMS or (unit.purpose == EVENTS and unit.source.format == "online_retail")


def number_lines(units: list[ScanUnit], counts: dict[str, int]) -> list[ScanUnit]:
    """Byte-range units with their first line numbers, from the line count of each range (`counts`)."""
    numbered, next_line = [], {}
    for unit in units:
        if unit.first_line:
            numbered.append(unit)
            continue
        first = next_line.get(unit.file.path, 1)
        numbered.append(dataclasses.replace(unit, first_line=first))
        next_line[unit.file.path] = first + counts[unit.name]
    return numbered


def count_lines(unit: ScanUnit) -> int:
    """How many lines start inside the unit's byte range (a Ray task, for `number_lines`)."""
    return sum(chunk.count(b"\n") for chunk in _range_chunks(unit))


# ------------------------------------------------------------------------------------- reading


def _compression(path: str) -> str | None:
    return "gzip" if path.endswith(".gz") else None


def _read(stream: Any, size: int, path: str) -> bytes:
    try:
        return stream.read(size)
    except (OSError, pa.ArrowException) as exc:
        raise CPRecError(f"cannot read {path}: {exc}".splitlines()[0]) from exc


def _range_chunks(unit: ScanUnit) -> Iterator[bytes]:
    """Chunks of whole lines, each ending in b'\\n', holding exactly the lines that start inside
    the unit's byte range (the whole file when it has none); the file's byte-order mark is dropped."""
    path = unit.file.path
    fs, inner = storage.filesystem(path)
    if unit.end is None:
        with fs.open_input_stream(inner, compression=_compression(path)) as stream:
            yield from _whole_lines(_blocks(stream, None, path), bom=True)
        return
    with fs.open_input_file(inner) as file:
        start = _next_line_start(file, unit.start, path) if unit.start else 0
        if start >= unit.end:
            return  # one long line covers the whole range: it belongs to the range before
        file.seek(start)
        yield from _whole_lines(_blocks(file, unit.end - start, path), bom=start == 0)


def _blocks(stream: Any, size: int | None, path: str) -> Iterator[bytes]:
    """`size` bytes (None: to the end) in CHUNK_BYTES blocks, then the rest of a line cut at the end."""
    left, last = size, b"\n"
    while left is None or left > 0:
        block = _read(stream, CHUNK_BYTES if left is None else min(CHUNK_BYTES, left), path)
        if not block:
            return
        if left is not None:
            left -= len(block)
        last = block[-1:]
        yield block
    while last != b"\n":  # the range's last line runs past its end: read it to its newline
        block = _read(stream, 1 << 16, path)
        if not block:
            return
        cut = block.find(b"\n")
        yield block if cut < 0 else block[: cut + 1]
        last = b"\n" if cut >= 0 else block[-1:]


def _whole_lines(blocks: Iterator[bytes], bom: bool) -> Iterator[bytes]:
    rest = b""
    for block in blocks:
        data = rest + block
        if bom:
            data, bom = data.removeprefix(BOM), len(data) < len(BOM)
        cut = data.rfind(b"\n")
        if cut < 0:
            rest = data
            continue
        yield data[: cut + 1]
        rest = data[cut + 1 :]
    if rest:
        yield rest + b"\n"  # a last line without its newline


def _next_line_start(file: Any, offset: int, path: str) -> int:
    """The first line start at or after `offset`: just past the first newline at or after offset - 1."""
    file.seek(offset - 1)
    position = offset - 1
    while True:
        block = _read(file, 1 << 16, path)
        if not block:
            return position
        cut = block.find(b"\n")
        if cut >= 0:
            return position + cut + 1
        position += len(block)


def _prefetched(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """The same chunks, read (and decompressed) one ahead on a thread, so reading and parsing
    overlap: Arrow's reads and DuckDB's queries release the GIL."""
    pending: queue.Queue = queue.Queue(maxsize=1)
    done = object()

    def produce() -> None:
        try:
            for chunk in chunks:
                pending.put(chunk)
            pending.put(done)
        except BaseException as exc:  # re-raised in the consumer, where the task reports it
            pending.put(exc)

    threading.Thread(target=produce, daemon=True).start()
    while True:
        item = pending.get()
        if item is done:
            return
        if isinstance(item, BaseException):
            raise item
        yield item


def _line_offsets(chunk: bytes, mask: np.ndarray | None = None) -> np.ndarray:
    """Arrow offsets of the chunk's lines, each line keeping its b'\\n' (JSON parsers and the TSV
    split ignore it; the Python path strips it). `mask`, a reusable buffer of at least the chunk's
    size, spares a fresh allocation per chunk (page faults cost more than the comparison here)."""
    data = np.frombuffer(chunk, dtype=np.uint8)
    newlines = np.equal(data, 10, out=None if mask is None else mask[: len(data)])
    return np.concatenate(([0], np.flatnonzero(newlines) + 1)).astype(np.int32)


def _lines_table(
    chunk: bytes, first_line: int, mask: np.ndarray | None = None
) -> tuple[pa.Table, list[tuple[int, bytes]]]:
    """(line, raw) of the chunk's valid UTF-8 lines as strings, and the (line, bytes) of the others."""
    offsets = _line_offsets(chunk, mask)
    count = len(offsets) - 1
    numbers = pa.array(np.arange(first_line, first_line + count, dtype=np.int64))
    data = pa.py_buffer(chunk)
    binary = pa.BinaryArray.from_buffers(pa.binary(), count, [None, pa.py_buffer(offsets), data])
    invalid: list[tuple[int, bytes]] = []
    try:
        raw = pa.StringArray.from_buffers(count, pa.py_buffer(offsets), data)
        raw.validate(full=True)
    except pa.ArrowInvalid:
        # rare: find the lines that are not UTF-8 and keep them for the Python path
        good = np.ones(count, dtype=bool)
        for i, value in enumerate(binary.to_pylist()):
            try:
                value.decode("utf-8")
            except UnicodeDecodeError:
                good[i] = False
                invalid.append((first_line + i, value))
        mask = pa.array(good)
        numbers, raw = numbers.filter(mask), binary.filter(mask).cast(pa.string())
    return pa.table({"line": numbers, "raw": raw}), invalid


# ------------------------------------------------------------------------------ the fast paths

# Python's str.strip() removes every character for which str.isspace() holds; DuckDB's trim() with
# exactly that set strips the same, so an id or a title reads the same on both paths.
_SPACES = "".join(c for c in map(chr, range(sys.maxunicode + 1)) if c.isspace())


def _strip(sql: str) -> str:
    # trim() with a character set costs a set look-up per character: only strings that start or end
    # with one of them pay it
    return (
        f"(CASE WHEN contains('{_SPACES}', left({sql}, 1)) OR contains('{_SPACES}', right({sql}, 1)) "
        f"THEN trim({sql}, '{_SPACES}') ELSE {sql} END)"
    )


# The field expressions below read, for field i: v[i] its JSON, t{i} its JSON type, s{i} its string
# stripped (a string or an integer, else NULL) — each computed once per line by `_json_query`.


def _elements(i: int) -> str:
    """The stripped, non-blank strings of list field i (only read when its elements are all strings or nulls)."""
    return (
        f"list_filter(list_transform(json_extract_string(v[{i}], '$[*]'), lambda e: {_strip('e')}), "
        "lambda e: e <> '')"
    )


def _text(i: int) -> tuple[str, str]:
    """(value, is-plain) SQL for readers._text of field i: a string, a list of strings, or null or
    absent, an object or a boolean (no text). Numbers and other lists take the Python path."""
    value = (
        f"CASE t{i} WHEN 'VARCHAR' THEN nullif(s{i}, '') "
        f"WHEN 'ARRAY' THEN nullif(array_to_string({_elements(i)}, ' '), '') END"
    )
    return value, _plain_text(i)


def _leaf(i: int) -> tuple[str, str]:
    """(value, is-plain) SQL for readers._leaf of field i: the last non-blank string of a list."""
    value = f"CASE t{i} WHEN 'VARCHAR' THEN nullif(s{i}, '') WHEN 'ARRAY' THEN {_elements(i)}[-1] END"
    return value, _plain_text(i)


def _plain_text(i: int) -> str:
    return (
        f"(t{i} IS NULL OR t{i} IN ('NULL', 'VARCHAR', 'OBJECT', 'BOOLEAN') OR (t{i} = 'ARRAY' AND "
        f"list_bool_and(list_transform(json_type(v[{i}], '$[*]'), lambda e: e IN ('VARCHAR', 'NULL'))) "
        "IS NOT FALSE))"
    )


def _id(i: int) -> tuple[str, str]:
    return f"s{i}", f"(t{i} = 'VARCHAR' AND s{i} <> '')"


def _timestamp(i: int, unit_ms: int) -> tuple[str, str]:
    """Integer timestamps only (what the dumps write); a float or a string takes the Python path."""
    whole = f"TRY_CAST(s{i} AS BIGINT)"
    low, high = MIN_TIMESTAMP_MS // unit_ms - 1, MAX_TIMESTAMP_MS // unit_ms + 1
    value = f"(CASE WHEN {whole} BETWEEN {low} AND {high} THEN {whole} * {unit_ms} END)"
    plain = f"(t{i} IN ('BIGINT', 'UBIGINT') AND {value} >= {MIN_TIMESTAMP_MS} AND {value} < {MAX_TIMESTAMP_MS})"
    return value, plain


def _count(i: int) -> tuple[str, str]:
    """readers._count of field i: an integer >= 0 that fits int64, else NULL (the parser leaves
    every other shape out too, so every shape is plain)."""
    whole = f"TRY_CAST(s{i} AS BIGINT)"
    return f"(CASE WHEN t{i} IN ('BIGINT', 'UBIGINT') AND {whole} >= 0 THEN {whole} END)", "TRUE"


def _average_rating(i: int) -> tuple[str, str]:
    """readers._average_rating of field i: a number on the star scale, else NULL (every shape is plain)."""
    number = f"TRY_CAST(json_extract_string(v[{i}], '$') AS DOUBLE)"
    in_range = f"{number} BETWEEN {MIN_STARS} AND {MAX_STARS}"
    return f"(CASE WHEN t{i} IN ('BIGINT', 'UBIGINT', 'DOUBLE') AND {in_range} THEN {number} END)", "TRUE"


# Formats without ratings in their metadata (readers.NO_RATINGS).
_NO_RATINGS = [("NULL::BIGINT", "TRUE"), ("NULL::DOUBLE", "TRUE")]


def _brand_2023(store: int, details: int, brand: int) -> tuple[str, str]:
    """readers: the store, else details.Brand when details is an object."""
    store_value, store_plain = _text(store)
    brand_value, brand_plain = _text(brand)
    value = f"coalesce({store_value}, CASE WHEN t{details} = 'OBJECT' THEN {brand_value} END)"
    return value, f"({store_plain} AND (t{details} IS DISTINCT FROM 'OBJECT' OR {brand_plain}))"


# Per (format, role): the JSON paths read once per line (1-based in the SQL) and each value computed
# from them, in the order of readers.EVENT_VALUES / ITEM_VALUES.
_JSON_FIELDS: dict[tuple[str, str], tuple[list[str], list[tuple[str, str]]]] = {
    ("amazon2023", "events"): (["user_id", "parent_asin", "timestamp"], [_id(1), _id(2), _timestamp(3, 1)]),
    ("amazon2018", "events"): (["reviewerID", "asin", "unixReviewTime"], [_id(1), _id(2), _timestamp(3, 1000)]),
    ("amazon2023", "items"): (
        [
            "parent_asin", "title", "store", "details", "details.Brand", "categories", "description",
            "rating_number", "average_rating",
        ],
        [_id(1), _text(2), _brand_2023(3, 4, 5), _leaf(6), _text(7), _count(8), _average_rating(9)],
    ),
    ("amazon2018", "items"): (
        ["asin", "title", "brand", "category", "description"],
        [_id(1), _text(2), _text(3), _leaf(4), _text(5), *_NO_RATINGS],
    ),
}


def _json_query(format: str, role: str) -> str:
    keys, computed = _JSON_FIELDS[(format, role)]
    paths = ", ".join("'$." + ".".join(f'"{part}"' for part in key.split(".")) + "'" for key in keys)
    fields = range(1, len(keys) + 1)
    types = ", ".join(f"json_type(v[{i}]) AS t{i}" for i in fields)
    # unquoting a long list or object costs as much as parsing it: strings of scalars only
    strings = ", ".join(
        f"CASE WHEN t{i} IN ('VARCHAR', 'BIGINT', 'UBIGINT') THEN json_extract_string(v[{i}], '$') END AS r{i}"
        for i in fields
    )
    stripped = ", ".join(f"{_strip(f'r{i}')} AS s{i}" for i in fields)
    names = EVENT_VALUES if role == "events" else ITEM_VALUES
    columns = ", ".join(f"{value} AS {name}" for (value, _), name in zip(computed, names, strict=True))
    plain = " AND ".join(p for _, p in computed)
    # try(): a line that is not JSON gives NULL, and the Python path its reason; each stage below
    # computes its columns once per line for the expressions that read them
    return f"""
        WITH parsed AS (SELECT line, raw, try(json_extract(raw, [{paths}])) AS v FROM lines),
        typed AS (SELECT *, {types} FROM parsed),
        unquoted AS (SELECT *, {strings} FROM typed),
        fields AS (SELECT *, {stripped} FROM unquoted)
        SELECT line, plain, CASE WHEN NOT plain THEN raw END AS raw, {columns}
        FROM (SELECT *, coalesce(v IS NOT NULL AND {plain}, FALSE) AS plain FROM fields)
    """


def _recbole_events_query(header: str) -> str:
    """readers.make_recbole_event_parser for lines of plain shape: the right number of cells, the
    ids present, the timestamp plain decimal seconds."""
    columns = readers.recbole_columns(header)
    cells = "string_split(rtrim(raw, chr(13) || chr(10)), chr(9))"
    user, item, seconds = (_strip(f"cells[{columns[n] + 1}]") for n in ("user_id", "item_id", "timestamp"))
    ms = f"(CASE WHEN regexp_full_match({seconds}, '[0-9]{{1,12}}(\\.[0-9]+)?') THEN {seconds}::DOUBLE * 1000 END)"
    return f"""
        WITH split AS (SELECT line, raw, {cells} AS cells FROM lines)
        SELECT line, plain, CASE WHEN NOT plain THEN raw END AS raw,
               {user} AS user_id, {item} AS item_id, trunc({ms})::BIGINT AS timestamp
        FROM (
          SELECT *, coalesce(len(cells) = {len(columns)} AND {user} <> '' AND {item} <> ''
                             AND {ms} >= {MIN_TIMESTAMP_MS} AND {ms} < {MAX_TIMESTAMP_MS}, FALSE) AS plain
          FROM split
        )
    """


def fast_query(format: str, role: str, header: str | None) -> str | None:
    """The DuckDB query over `lines` (line, raw) that parses a chunk into (line, plain, raw, values...):
    values where `plain`, else the raw line for the Python parser. None where every line goes
    through the Python parser (RecBole item files and Online Retail: catalogue-sized)."""
    if (format, role) in _JSON_FIELDS:
        return _json_query(format, role)
    if format == "recbole" and role == "events" and header is not None:
        return _recbole_events_query(header)
    return None


# ------------------------------------------------------------------------------- the Python path


class _Rows:
    """Rows of EVENT_ROWS or ITEM_ROWS gathered from the Python path."""

    def __init__(self, role: str, domain: str, source_file: str):
        self.schema = EVENT_ROWS if role == "events" else ITEM_ROWS
        self.value_names = EVENT_VALUES if role == "events" else ITEM_VALUES
        self.domain, self.source_file = domain, source_file
        self.columns: dict[str, list[Any]] = {f.name: [] for f in self.schema}

    def add(self, line: int, values: tuple | None, status: str, reason: str | None, record: str | None) -> None:
        for name, value in zip(self.value_names, values or (None,) * len(self.value_names)):
            self.columns[name].append(value)
        self.columns["domain"].append(self.domain)
        self.columns["source_file"].append(self.source_file)
        self.columns["line"].append(line)
        self.columns["status"].append(status)
        self.columns["reason"].append(reason)
        self.columns["record"].append(record)

    def parse(self, line: int, text: str, parse: Callable[[str], tuple], quiet: bool = False) -> bool:
        """Adds the outcome of one line; `quiet` keeps only parsed and skipped lines. True if parsed."""
        if not text.strip():
            if not quiet:
                self.add(line, None, "skip", "blank_line", text)
            return False
        try:
            self.add(line, parse(text), "ok", None, None)
            return True
        except Skip as skipped:
            self.add(line, None, "skip", str(skipped), text)
        except Reject as rejected:
            if not quiet:
                self.add(line, None, "reject", str(rejected), text)
        return False

    def non_utf8(self, line: int, raw: bytes) -> None:
        self.add(line, None, "reject", "non_utf8", raw.removesuffix(b"\n").decode("utf-8", "backslashreplace"))

    def table(self) -> pa.Table:
        return pa.table(self.columns, schema=self.schema)


def _as_parsed(text: str) -> str:
    """A line as the parsers take it: no newline, no trailing carriage returns."""
    return text.removesuffix("\n").rstrip("\r")


def _text_of(raw: bytes) -> str | None:
    """`_as_parsed` of a line's bytes, None if they are not UTF-8."""
    try:
        return _as_parsed(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return None


# ------------------------------------------------------------------------------------- writing


class _Output:
    """One unit's scratch files: events by partition, or one items file; opened on first write."""

    def __init__(self, work: str, unit: ScanUnit, partitions: int, item_ratings: bool = False):
        self.work, self.unit, self.partitions = work, unit, partitions
        self.item_ratings = item_ratings
        self.writers: dict[str, pq.ParquetWriter] = {}

    def _write(self, relative: str, table: pa.Table) -> None:
        if not table.num_rows:
            return
        if relative not in self.writers:
            fs, path = storage.filesystem(storage.join(self.work, relative))
            fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
            self.writers[relative] = pq.ParquetWriter(path, table.schema, filesystem=fs, compression="zstd")
        self.writers[relative].write_table(table)

    def events(self, rows: pa.Table, con: duckdb.DuckDBPyConnection) -> None:
        con.register("rows", rows)
        part = con.sql(
            f"SELECT CASE WHEN status = 'ok' THEN {sequences.partition_expr('user_id', self.partitions)} "
            "ELSE -1 END FROM rows"
        ).fetchnumpy()
        con.unregister("rows")
        column = np.asarray(next(iter(part.values())))
        for p in np.unique(column):
            self._write(f"events/part={p}/{self.unit.name}.parquet", rows.filter(pa.array(column == p)))

    def items(self, rows: pa.Table, directory: str) -> None:
        self._write(f"{directory}/{self.unit.name}.parquet", cleaning.with_item_text(rows, self.item_ratings))

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()


# ----------------------------------------------------------------------------------- the task


def scan_unit(unit: ScanUnit, work: str, partitions: int, item_ratings: bool = False) -> dict:
    """Reads one unit into the scratch layout, item texts with their ratings when `item_ratings`
    (BuildConfig.item_ratings); returns {"files": {path: {"records": n}}}."""
    con = duckdb.connect(config={"threads": 1, "preserve_insertion_order": True})
    output = _Output(work, unit, partitions, item_ratings)
    try:
        if unit.source.format == "online_retail":
            records = _scan_retail(unit, output, con)
        else:
            records = _scan_lines(unit, output, con)
    finally:
        output.close()
    return {"files": {unit.file.path: {"records": records}}}


def _scan_lines(unit: ScanUnit, output: _Output, con: duckdb.DuckDBPyConnection) -> int:
    role = unit.file.role
    parse = readers.line_parser(unit.source.format, role, unit.header, unit.file.path, unit.source)
    query = fast_query(unit.source.format, role, unit.header)
    skip_header = unit.header is not None and unit.start == 0
    line, records = unit.first_line, 0
    fast_columns = ["line", *(EVENT_VALUES if role == "events" else ITEM_VALUES)]
    mask = np.empty(0, dtype=bool)
    for chunk in _prefetched(_range_chunks(unit)):
        if len(mask) < len(chunk):
            mask = np.empty(len(chunk), dtype=bool)
        lines, invalid = _lines_table(chunk, line, mask)
        line += len(lines) + len(invalid)
        slow = _Rows(role, unit.file.domain, unit.file.path)
        tables = []
        if skip_header:
            lines = lines.filter(pc.not_equal(lines["line"], 1))
            invalid = [(n, raw) for n, raw in invalid if n != 1]
            skip_header = False
        if query is not None:
            con.register("lines", lines)
            result = con.sql(query).to_arrow_table()
            con.unregister("lines")
            plain = result["plain"]
            fast = result.filter(plain).select(fast_columns)
            tables.append(_with_outcome(fast, unit, role))
            others = result.filter(pc.invert(plain)).select(["line", "raw"])
        else:
            others = lines
        for number, text in zip(others["line"].to_pylist(), others["raw"].to_pylist()):
            slow.parse(number, _as_parsed(text), parse)
        for number, raw in invalid:
            slow.non_utf8(number, raw)
        tables.append(slow.table())
        rows = pa.concat_tables(tables)
        records += rows.num_rows
        if unit.purpose == EVENTS:
            output.events(rows, con)
        else:
            output.items(rows, OUTPUT_DIRS[unit.purpose])
    return records


def _with_outcome(fast: pa.Table, unit: ScanUnit, role: str) -> pa.Table:
    """Fast-path values as rows of EVENT_ROWS / ITEM_ROWS: status 'ok', no reason, no record."""
    schema = EVENT_ROWS if role == "events" else ITEM_ROWS
    n = fast.num_rows
    constant = {
        "domain": pa.repeat(unit.file.domain, n),
        "source_file": pa.repeat(unit.file.path, n),
        "status": pa.repeat("ok", n),
        "reason": pa.nulls(n, pa.string()),
        "record": pa.nulls(n, pa.string()),
    }
    return pa.table(
        {f.name: (fast[f.name] if f.name in fast.column_names else constant[f.name]).cast(f.type) for f in schema},
        schema=schema,
    )


# Online Retail: a record is a line, or lines joined while a quoted field is open (an odd number of
# quote characters so far); a quote still open after this many lines leaves its first line to the
# parser alone (a malformed record) and the lines after it are read again as records.
MAX_RECORD_LINES = 64


def _retail_records(unit: ScanUnit) -> Iterator[tuple[int, bytes]]:
    """(first line number, raw bytes) of each CSV record after the header."""

    def numbered() -> Iterator[tuple[int, bytes]]:
        number = 0
        for chunk in _prefetched(_range_chunks(unit)):
            for raw in chunk.split(b"\n")[:-1]:
                number += 1
                if number > 1:  # the header, checked on the driver
                    yield number, raw

    lines, again = numbered(), collections.deque()
    pending: list[tuple[int, bytes]] = []
    quotes = 0
    while True:
        line = again.popleft() if again else next(lines, None)
        if line is not None:
            pending.append(line)
            quotes += line[1].count(b'"')
            if quotes % 2 == 0:
                yield pending[0][0], b"\n".join(raw for _, raw in pending)
                pending, quotes = [], 0
                continue
            if len(pending) < MAX_RECORD_LINES:
                continue
        elif not pending:
            return
        yield pending[0]
        again.extendleft(reversed(pending[1:]))
        pending, quotes = [], 0


def _scan_retail(unit: ScanUnit, output: _Output, con: duckdb.DuckDBPyConnection) -> int:
    """Online Retail record by record: the interaction row (every record accounted) and, for a
    product line, its catalogue row; a text-only catalogue keeps catalogue rows only."""
    columns = readers.retail_columns(unit.header or "", unit.file.path)
    parse_event = readers.make_retail_event_parser(columns)
    parse_item = readers.make_retail_item_parser(columns)
    events = _Rows("events", unit.file.domain, unit.file.path)
    items = _Rows("items", unit.file.domain, unit.file.path)
    for number, raw in _retail_records(unit):
        text = _text_of(raw)
        if unit.purpose == CATALOG:
            if text is not None:
                items.parse(number, text, parse_item, quiet=True)
        elif text is None:
            events.non_utf8(number, raw)
        else:
            events.parse(number, text, parse_event)
            if text.strip():
                _catalogue_row(items, number, text, parse_item)
    if unit.purpose == CATALOG:
        table = items.table()
        output.items(table, OUTPUT_DIRS[CATALOG])
        return table.num_rows
    table = events.table()
    output.events(table, con)
    output.items(items.table(), OUTPUT_DIRS[ITEMS])
    return table.num_rows


def _catalogue_row(items: _Rows, number: int, text: str, parse_item: Callable[[str], tuple]) -> None:
    """An event source's product line as a catalogue row; its skips and rejects are the event row's."""
    try:
        items.add(number, parse_item(text), "ok", None, None)
    except (Skip, Reject):
        pass
