"""The DuckDB-only reference for the data build benchmark: one process, one SQL engine, no Ray.

Reads an Amazon Reviews source in either layout with DuckDB's `read_json` (gzip or plain):
  amazon2018: `<Domain>[_5].json[.gz]` (reviewerID, asin, unixReviewTime [s]) and
              `meta_<Domain>.json[.gz]` (asin, title, brand, category [a list path]);
  amazon2023: `<Domain>.jsonl[.gz]` (user_id, parent_asin, timestamp [ms]) and
              `meta_<Domain>.jsonl[.gz]` (parent_asin, title, store, details.Brand, categories),
and writes the same sequences as `cprec data build stop_after=sequences` with its defaults, so
`data_build.py` can check the two agree and compare their times:

  - the same files and domains (the build's own `readers.discover`);
  - the build's line rules: a line that is not a JSON object (truncated, say), or whose user id,
    item id or timestamp is missing, blank, of the wrong JSON type or (timestamps) outside
    [1990, 2100) once in ms, is dropped (`read_json(ignore_errors=true)` turns a malformed line
    into a row of NULLs; the rules are SQL macros over JSON-typed columns, below);
  - item metadata: the first line per item by (file, line) (DuckDB keeps each file's line order
    with preserve_insertion_order, so a table's rowid is the line order), its text from the shared
    template (`cprec.core.template`), items without a usable title dropped with their events;
  - events of items without metadata dropped; a repeated (user, item) keeps its earliest event
    (ties: file, then line — only the file can change what is kept);
  - the all-domain k-core (k users per item, k items per user) to its fixed point;
  - per user, domain and mixed (>= 2 domains) histories ordered by (timestamp, item_id), cut into
    windows of at most `max_items`, at least `min_items`, the stable md5 split, the template text.

Python handles only what the build's template does per item and per document, a batch at a time.
Not mirrored (none occurs in the generated worlds): lines the build rejects as non-UTF-8 (bad bytes,
or a lone `\\ud800` escape), JSON only Python accepts (NaN, Infinity), duplicate keys in a line, and
numbers used as text whose Python spelling differs from the JSON one (`1e3` vs `1000.0`).

    python benchmarks/data_build_reference.py SRC_DIR OUT.parquet [--format amazon2018] [--k 5]
"""

from __future__ import annotations

import json
import time

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from cprec.core import template
from cprec.data_prep.readers import MAX_TIMESTAMP_MS, MIN_TIMESTAMP_MS, SourceConfig, discover
from cprec.data_prep.sequences import HASH_BUCKETS, window_macros

# Field names per layout: events (user, item, timestamp, seconds->ms) and metadata.
LAYOUTS = {
    "amazon2018": {
        "events": ("reviewerID", "asin", "unixReviewTime", 1000),
        "items": {"id": "asin", "title": "title", "brand": "brand", "category": "category"},
    },
    "amazon2023": {
        "events": ("user_id", "parent_asin", "timestamp", 1),
        "items": {"id": "parent_asin", "title": "title", "brand": "store", "category": "categories"},
    },
}
BATCH_ROWS = 65_536  # sequences per Parquet write

# What Python's str.strip() removes: the build strips ids and texts with it. trim() with a set of
# characters is slow, so py_strip first checks the ends (code points 33..132 are never whitespace).
_PY_SPACE = "".join(c for c in map(chr, range(0x110000)) if c.isspace())

# The build's field rules (cprec.data_prep.readers: _required_id, _required_timestamp, _text, _leaf)
# over JSON values; NULL where the build rejects the line (ids, timestamps) or has no text.
_MACROS = f"""
CREATE OR REPLACE TEMP MACRO py_strip(s) AS
  CASE WHEN unicode(s) BETWEEN 33 AND 132 AND unicode(s[-1]) BETWEEN 33 AND 132 THEN s
       ELSE trim(s, '{_PY_SPACE}') END;
CREATE OR REPLACE TEMP MACRO py_id(j) AS
  CASE WHEN json_type(j) IN ('VARCHAR', 'BIGINT', 'UBIGINT') THEN nullif(py_strip(j ->> '$'), '') END;
CREATE OR REPLACE TEMP MACRO py_number(j) AS
  CASE WHEN json_type(j) IN ('BIGINT', 'UBIGINT', 'DOUBLE') THEN (j ->> '$')::DOUBLE
       WHEN json_type(j) = 'VARCHAR' THEN TRY_CAST(py_strip(j ->> '$') AS DOUBLE) END;
CREATE OR REPLACE TEMP MACRO py_timestamp(j, unit_ms) AS
  CASE WHEN isfinite(py_number(j))
        AND py_number(j) * unit_ms >= {MIN_TIMESTAMP_MS} AND py_number(j) * unit_ms < {MAX_TIMESTAMP_MS}
       THEN trunc(py_number(j) * unit_ms)::BIGINT END;
CREATE OR REPLACE TEMP MACRO py_parts(j) AS
  list_filter(list_transform(json_extract(j, '$[*]'),
                             lambda x: CASE WHEN json_type(x) IN ('VARCHAR', 'BIGINT', 'UBIGINT', 'DOUBLE')
                                                THEN py_strip(x ->> '$') END),
              lambda x: x IS NOT NULL AND x <> '');
CREATE OR REPLACE TEMP MACRO py_text(j) AS
  CASE json_type(j) WHEN 'VARCHAR' THEN nullif(py_strip(j ->> '$'), '')
                    WHEN 'ARRAY' THEN nullif(array_to_string(py_parts(j), ' '), '')
                    WHEN 'BIGINT' THEN j ->> '$' WHEN 'UBIGINT' THEN j ->> '$' WHEN 'DOUBLE' THEN j ->> '$' END;
CREATE OR REPLACE TEMP MACRO py_leaf(j) AS
  CASE WHEN json_type(j) = 'ARRAY' THEN py_parts(j)[-1] ELSE py_text(j) END;
"""


def _read(paths: list[str], columns: list[str]) -> str:
    """read_json over `paths` with every column JSON-typed (the macros apply the build's type rules)."""
    spec = ", ".join(f"{_quote(c)}: 'JSON'" for c in columns)
    files = ", ".join(_quote(p) for p in paths)
    return (
        f"read_json([{files}], format = 'newline_delimited', filename = true, ignore_errors = true, "
        f"columns = {{{spec}}})"
    )


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def reference_sequences(
    src: str,
    out: str,
    format: str = "amazon2018",
    k: int = 5,
    max_items: int = 50,
    min_items: int = 2,
    valid_fraction: float = 0.02,
    threads: int = 2,
    memory_limit: str = "",
) -> dict:
    layout = LAYOUTS[format]
    files = discover(SourceConfig(format=format, path=src))
    config = {"threads": threads, "preserve_insertion_order": True}
    if memory_limit:
        config["memory_limit"] = memory_limit
    con = duckdb.connect(config=config)
    con.execute(_MACROS)
    window_macros(con)
    # the build orders by its source_file strings (the listed paths); file_rank is that order
    con.execute("CREATE TABLE files (path VARCHAR, role VARCHAR, domain VARCHAR)")
    con.executemany("INSERT INTO files VALUES (?, ?, ?)", [(f.path, f.role, f.domain) for f in files])
    con.execute("CREATE TABLE file_ranks AS SELECT *, row_number() OVER (ORDER BY path) AS file_rank FROM files")
    meta_paths = [f.path for f in files if f.role == "items"]
    event_paths = [f.path for f in files if f.role == "events"]
    counts: dict = {}

    # metadata: one row per line in file order (rowid), the first valid line per item kept
    m = layout["items"]
    con.execute(
        f"""
        CREATE TABLE meta_lines AS
        SELECT filename, "{m["id"]}" AS id, "{m["title"]}" AS title, "{m["brand"]}" AS brand,
               "{m["category"]}" AS category{", details" if format == "amazon2023" else ""}
        FROM {_read(meta_paths, [*m.values(), *(["details"] if format == "amazon2023" else [])])}
        """
    )
    brand = "py_text(brand)"
    if format == "amazon2023":  # the store, else details.Brand when details is an object
        brand = (
            "coalesce(py_text(brand), CASE WHEN json_type(details) = 'OBJECT' THEN py_text(details -> '$.Brand') END)"
        )
    con.execute(
        f"""
        CREATE TABLE catalogue AS
        SELECT item_id, domain, title, brand, category FROM (
          SELECT py_id(id) AS item_id, f.domain, py_text(title) AS title, {brand} AS brand,
                 py_leaf(category) AS category,
                 row_number() OVER (PARTITION BY py_id(id) ORDER BY f.path, l.rowid) AS rank
          FROM meta_lines l JOIN file_ranks f ON f.path = l.filename
          WHERE py_id(id) IS NOT NULL
        ) WHERE rank = 1
        """
    )
    counts["metadata_lines"] = con.sql("SELECT count(*) FROM meta_lines").fetchall()[0][0]
    con.execute("DROP TABLE meta_lines")

    # events: the valid lines, with their domain and file rank (line order never decides what is kept)
    user, item, ts, unit = layout["events"]
    con.execute(
        f"""
        CREATE TABLE events AS
        SELECT e.user_id, e.item_id, f.domain, e.timestamp, f.file_rank FROM (
          SELECT filename, py_id("{user}") AS user_id, py_id("{item}") AS item_id,
                 py_timestamp("{ts}", {unit}) AS timestamp
          FROM {_read(event_paths, [user, item, ts])}
        ) e JOIN file_ranks f ON f.path = e.filename
        WHERE e.user_id IS NOT NULL AND e.item_id IS NOT NULL AND e.timestamp IS NOT NULL
        """
    )
    counts["valid_event_lines"] = con.sql("SELECT count(*) FROM events").fetchall()[0][0]

    # item text (the shared template, in Python) for the items that have events
    meta = con.sql(
        "SELECT item_id, domain, title, brand, category FROM catalogue "
        "WHERE item_id IN (SELECT DISTINCT item_id FROM events) ORDER BY item_id"
    ).to_arrow_table()
    texts = [
        template.item_text(d, t, b, c)
        for d, t, b, c in zip(*(meta[n].to_pylist() for n in ("domain", "title", "brand", "category")))
    ]
    con.register("item_texts", pa.table({"item_id": meta["item_id"], "text": pa.array(texts, pa.string())}))
    con.execute("CREATE TABLE texts AS SELECT * FROM item_texts WHERE text <> ''")
    con.unregister("item_texts")

    # known, titled items; a (user, item) pair keeps its earliest event (ties: the file first listed)
    con.execute(
        """
        CREATE TABLE clean AS
        SELECT user_id, item_id, first.domain AS domain, first.timestamp AS timestamp FROM (
          SELECT user_id, item_id, min({'timestamp': timestamp, 'file_rank': file_rank, 'domain': domain}) AS first
          FROM events SEMI JOIN texts USING (item_id)
          GROUP BY user_id, item_id
        )
        """
    )
    con.execute("DROP TABLE events")
    counts["events_after_dedupe"] = con.sql("SELECT count(*) FROM clean").fetchall()[0][0]

    # k-core to its fixed point, as the build does it: the item set only shrinks; users are those with
    # >= k events on it, items those with >= k such users
    con.execute("CREATE TABLE items AS SELECT DISTINCT item_id FROM clean")
    size = con.sql("SELECT count(*) FROM items").fetchall()[0][0]
    rounds = 0
    while True:
        rounds += 1
        con.execute(
            f"""
            CREATE OR REPLACE TABLE users AS
            SELECT user_id FROM clean SEMI JOIN items USING (item_id) GROUP BY user_id HAVING count(*) >= {k}
            """
        )
        con.execute(
            f"""
            CREATE OR REPLACE TABLE next_items AS
            SELECT item_id FROM clean SEMI JOIN items USING (item_id) SEMI JOIN users USING (user_id)
            GROUP BY item_id HAVING count(*) >= {k}
            """
        )
        new_size = con.sql("SELECT count(*) FROM next_items").fetchall()[0][0]
        if new_size == size:  # next_items == items (a subset of the same size): `users` is final
            break
        size = new_size
        con.execute("CREATE OR REPLACE TABLE items AS SELECT * FROM next_items")
    con.execute(
        "CREATE OR REPLACE TABLE clean AS SELECT * FROM clean SEMI JOIN items USING (item_id) SEMI JOIN users USING (user_id)"
    )
    counts["kept_events"] = con.sql("SELECT count(*) FROM clean").fetchall()[0][0]

    bound = round(valid_fraction * HASH_BUCKETS)
    reader = con.sql(
        f"""
        WITH numbered AS (
          SELECT user_id, 'domain' AS kind, domain AS d, item_id, timestamp,
                 row_number() OVER (PARTITION BY user_id, domain ORDER BY timestamp, item_id) - 1 AS i,
                 count(*) OVER (PARTITION BY user_id, domain) AS n
          FROM clean
          UNION ALL
          SELECT user_id, 'mixed', '{template.MIXED_DOMAIN}', item_id, timestamp,
                 row_number() OVER (PARTITION BY user_id ORDER BY timestamp, item_id) - 1,
                 count(*) OVER (PARTITION BY user_id)
          FROM clean WHERE user_id IN (SELECT user_id FROM clean GROUP BY user_id HAVING count(DISTINCT domain) >= 2)
        )
        SELECT user_id, kind, d AS domain, list(item_id ORDER BY i) AS item_ids,
               list(timestamp ORDER BY i) AS timestamps, list(t.text ORDER BY i) AS texts,
               CASE WHEN md5_number_lower(user_id) % {HASH_BUCKETS} < {bound} THEN 'valid' ELSE 'train' END AS split
        FROM (SELECT *, window_of(i, n, {max_items}) AS w FROM numbered) JOIN texts t USING (item_id)
        GROUP BY user_id, kind, d, w HAVING count(*) >= {min_items}
        ORDER BY user_id, kind, domain, w
        """
    ).to_arrow_reader(BATCH_ROWS)
    sequences = 0
    writer = None
    for batch in reader:
        documents = [
            template.document(kind, domain, item_texts)
            for kind, domain, item_texts in zip(*(batch.column(c).to_pylist() for c in ("kind", "domain", "texts")))
        ]
        table = pa.Table.from_batches([batch]).drop_columns(["texts"])
        table = table.append_column("text", pa.array(documents, pa.string()))
        if writer is None:
            writer = pq.ParquetWriter(out, table.schema, compression="zstd")
        writer.write_table(table)
        sequences += table.num_rows
    if writer is not None:
        writer.close()
    return {"sequences": sequences, "kcore_rounds": rounds, **counts}


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src")
    parser.add_argument("out")
    parser.add_argument("--format", choices=sorted(LAYOUTS), default="amazon2018")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--max-items", type=int, default=50)
    parser.add_argument("--valid-fraction", type=float, default=0.02)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--memory-limit", default="", help="DuckDB memory_limit, e.g. '4GB' ('' = its default)")
    args = parser.parse_args()
    start = time.perf_counter()
    result = reference_sequences(
        args.src,
        args.out,
        format=args.format,
        k=args.k,
        max_items=args.max_items,
        valid_fraction=args.valid_fraction,
        threads=args.threads,
        memory_limit=args.memory_limit,
    )
    print(json.dumps({**result, "seconds": round(time.perf_counter() - start, 2)}))
