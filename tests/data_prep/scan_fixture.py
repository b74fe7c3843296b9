"""Scanning sources in process, as `cprec data build` does with one Ray task per unit."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from cprec.core.sources import SourceConfig
from cprec.data_prep import files, scan
from cprec.data_prep.readers import EVENT_ROWS


def scan_tables(
    work: Path,
    sources: list[SourceConfig],
    catalogs: list[SourceConfig] = (),
    partitions: int = 4,
    item_ratings: bool = False,
) -> dict:
    """The scratch tables of `sources` (events, items, catalog) and the records counted per file."""
    units = scan.plan(sources, list(catalogs)).units
    counts = {u.name: scan.count_lines(u) for u in units if not u.first_line}
    records: dict[str, int] = {}
    for unit in scan.number_lines(units, counts):
        for path, n in scan.scan_unit(unit, str(work), partitions, item_ratings)["files"].items():
            records[path] = records.get(path, 0) + n["records"]
    tables = {
        role: files.read_table(str(work / scan.OUTPUT_DIRS[purpose]), schema)
        for role, purpose, schema in (
            ("events", scan.EVENTS, EVENT_ROWS),
            ("items", scan.ITEMS, scan.ITEM_ROWS_WITH_TEXT),
            ("catalog", scan.CATALOG, scan.ITEM_ROWS_WITH_TEXT),
        )
    }
    return {**tables, "records": records}


def rows_by_line(table: pa.Table) -> dict[tuple[str, int], dict]:
    """Rows by (file name, line); fails if a line was written twice."""
    found = {(Path(r["source_file"]).name, r["line"]): r for r in table.to_pylist()}
    assert len(found) == table.num_rows, "a line was written twice"
    return found
