"""The DuckDB-only reference for the data build benchmark: one process, one SQL engine, no Ray.

Reads Amazon-2023-layout files (`<Domain>.jsonl`, `meta_<Domain>.jsonl`) and writes the same
sequences as `cprec data build stop_after=sequences` (same cleaning, k-core, windows, split and
template), so `data_build.py` can check the two agree and compare their times. It trusts its input
(the benchmark's generated files are clean), which the real build does not.

    python benchmarks/data_build_reference.py SRC_DIR OUT.parquet [--k 5] [--max-items 50]
"""

from __future__ import annotations

import time

import duckdb
import pyarrow as pa

from cprec.core import template
from cprec.data_prep.sequences import HASH_BUCKETS, window_macros


def reference_sequences(src: str, out: str, k: int = 5, max_items: int = 50, min_items: int = 2,
                        valid_fraction: float = 0.02, threads: int = 2) -> dict:
    con = duckdb.connect(config={"threads": threads})
    window_macros(con)
    domain_of = "regexp_extract(filename, '([^/]+)\\.jsonl$', 1)"
    con.execute(
        f"""
        CREATE TABLE meta AS
        SELECT parent_asin AS item_id, regexp_replace({domain_of}, '^meta_', '') AS domain, title, store,
               categories[-1] AS category
        FROM read_json('{src}/meta_*.jsonl', filename = true, format = 'newline_delimited',
                       columns = {{parent_asin: 'VARCHAR', title: 'VARCHAR', store: 'VARCHAR',
                                   categories: 'VARCHAR[]'}})
        """
    )
    # The item text is the shared template's (Python), computed once per item.
    meta = con.sql("SELECT item_id, domain, title, store, category FROM meta ORDER BY item_id").to_arrow_table()
    texts = [
        template.item_text(d, t, s, c)
        for d, t, s, c in zip(*(meta[n].to_pylist() for n in ("domain", "title", "store", "category")))
    ]
    con.register("texts", pa.table({"item_id": meta["item_id"], "text": texts}))
    con.execute(
        f"""
        CREATE TABLE events AS
        SELECT user_id, parent_asin AS item_id, {domain_of} AS domain, timestamp
        FROM read_json('{src}/[!m]*.jsonl', filename = true, format = 'newline_delimited',
                       columns = {{user_id: 'VARCHAR', parent_asin: 'VARCHAR', timestamp: 'BIGINT'}})
        """
    )
    con.execute(
        """
        CREATE TABLE clean AS
        SELECT user_id, item_id, domain, min(timestamp) AS timestamp FROM events
        WHERE item_id IN (SELECT item_id FROM texts WHERE text <> '')
        GROUP BY user_id, item_id, domain
        """
    )
    rounds = 0
    while True:  # iterative k-core over the all-domain graph
        rounds += 1
        before = con.sql("SELECT count(*) FROM clean").fetchall()[0][0]
        con.execute(
            f"""
            CREATE OR REPLACE TABLE clean AS
            SELECT user_id, item_id, domain, timestamp FROM (
              SELECT *, count(*) OVER (PARTITION BY user_id) AS du, count(*) OVER (PARTITION BY item_id) AS di
              FROM clean) WHERE du >= {k} AND di >= {k}
            """
        )
        if con.sql("SELECT count(*) FROM clean").fetchall()[0][0] == before:
            break
    bound = round(valid_fraction * HASH_BUCKETS)
    rows = con.sql(
        f"""
        WITH numbered AS (
          SELECT user_id, 'domain' AS kind, domain AS d, item_id, timestamp,
                 row_number() OVER (PARTITION BY user_id, domain ORDER BY timestamp, item_id) - 1 AS i,
                 count(*) OVER (PARTITION BY user_id, domain) AS n
          FROM clean
          UNION ALL
          SELECT user_id, 'mixed', 'all', item_id, timestamp,
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
    ).to_arrow_table()
    documents = [
        template.document(kind, domain, item_texts)
        for kind, domain, item_texts in zip(*(rows[c].to_pylist() for c in ("kind", "domain", "texts")))
    ]
    table = rows.drop_columns(["texts"]).append_column("text", pa.array(documents, pa.string()))
    import pyarrow.parquet as pq

    pq.write_table(table, out, compression="zstd")
    return {"sequences": table.num_rows, "kcore_rounds": rounds}


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src")
    parser.add_argument("out")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--max-items", type=int, default=50)
    parser.add_argument("--valid-fraction", type=float, default=0.02)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    start = time.perf_counter()
    result = reference_sequences(
        args.src, args.out, k=args.k, max_items=args.max_items, valid_fraction=args.valid_fraction,
        threads=args.threads,
    )
    print({**result, "seconds": round(time.perf_counter() - start, 2)})
