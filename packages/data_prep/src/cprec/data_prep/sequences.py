"""Per-user sequences (docs/design.md §4) and catalogue-replay documents, as DuckDB queries over Arrow.

Ordering and windows are computed in SQL; the text of each document comes from
`cprec.core.template`, the one template shared with the evaluator.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

from cprec.core import template
from cprec.core.schemas import SEQUENCES
from cprec.data_prep.cleaning import connect
from cprec.data_prep.config import SequenceConfig

HASH_BUCKETS = 1_000_000

# Which window of core.template.windows(n, m) holds 0-based position i: the first `extra` windows
# hold base+1 items, the rest `base` (windows as equal as possible, so no short tail window).
_WINDOW_MACROS = """
CREATE OR REPLACE TEMP MACRO wcount(n, m) AS (n + m - 1) // m;
CREATE OR REPLACE TEMP MACRO wbase(n, m) AS n // wcount(n, m);
CREATE OR REPLACE TEMP MACRO wextra(n, m) AS n % wcount(n, m);
CREATE OR REPLACE TEMP MACRO window_of(i, n, m) AS
  CASE WHEN i < wextra(n, m) * (wbase(n, m) + 1) THEN i // (wbase(n, m) + 1)
       ELSE wextra(n, m) + (i - wextra(n, m) * (wbase(n, m) + 1)) // wbase(n, m) END;
"""


def hash_bucket(column: str, salt: str = "") -> str:
    """A stable SQL hash of a string column into [0, HASH_BUCKETS): md5, not DuckDB's versioned hash()."""
    value = f"{column} || '{salt}'" if salt else column
    return f"(md5_number_lower({value}) % {HASH_BUCKETS})"


def split_expr(column: str, valid_fraction: float) -> str:
    """'valid' for a stable `valid_fraction` share of the values of `column`, else 'train'."""
    bound = round(valid_fraction * HASH_BUCKETS)
    return f"CASE WHEN {hash_bucket(column)} < {bound} THEN 'valid' ELSE 'train' END"


def partition_expr(column: str, partitions: int) -> str:
    """The hash partition of a user: independent of the split hash (upper vs lower md5 bits)."""
    return f"(md5_number_upper({column}) % {partitions})::INTEGER"


def window_macros(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(_WINDOW_MACROS)


def build_sequences(
    interactions: pa.Table,
    texts: pa.Table,
    config: SequenceConfig,
    con: duckdb.DuckDBPyConnection | None = None,
    pool: pa.Table | None = None,
) -> pa.Table:
    """SEQUENCES of the users in `interactions`: windows of their domain and mixed histories.

    `texts` maps item_id -> text. Rows sorted by user_id, kind, domain, window. With
    `config.scramble`, `pool` (item_id, domain) is the whole catalogue the items are redrawn from
    (every item of `interactions` is in it; `scrambled_positions` says how).
    """
    if config.scramble and pool is None:
        raise ValueError("sequences.scramble needs the catalogue to draw from (pool)")
    con = con or connect()
    window_macros(con)
    con.register("interactions", interactions)
    con.register("texts", texts)
    parts = []
    if "domain" in config.kinds:
        parts.append(
            """
            SELECT user_id, 'domain' AS kind, domain AS seq_domain, item_id, timestamp,
                   row_number() OVER (PARTITION BY user_id, domain ORDER BY timestamp, item_id) - 1 AS i,
                   count(*) OVER (PARTITION BY user_id, domain) AS n
            FROM interactions
            """
        )
    if "mixed" in config.kinds:
        share = round(config.mixed_share * HASH_BUCKETS)
        # every bucket is below HASH_BUCKETS: a full share needs no hash (md5 per row costs)
        sampled = f"AND {hash_bucket('user_id', '#mixed')} < {share}" if share < HASH_BUCKETS else ""
        parts.append(
            f"""
            SELECT user_id, 'mixed' AS kind, '{template.MIXED_DOMAIN}' AS seq_domain, item_id, timestamp,
                   row_number() OVER (PARTITION BY user_id ORDER BY timestamp, item_id) - 1 AS i,
                   count(*) OVER (PARTITION BY user_id) AS n
            FROM interactions
            WHERE user_id IN (
              SELECT user_id FROM interactions GROUP BY user_id
              HAVING count(DISTINCT domain) >= {config.mixed_min_domains} {sampled}
            )
            """
        )
    positions = f"SELECT *, window_of(i, n, {config.max_items}) AS w FROM ({' UNION ALL '.join(parts)})"
    if config.scramble:
        con.register("scramble_pool", pool)
        con.execute(_SCRAMBLE_MACROS)
        positions = scrambled_positions(positions)
    # The template's document is its header, then each item text after ITEM_SEPARATOR: the headers
    # come from core.template (one per kind and domain), the joining is string_agg, so no text
    # crosses into Python.
    domains = [d for (d,) in con.sql("SELECT DISTINCT domain FROM interactions ORDER BY ALL").fetchall()]
    keys = [("domain", d) for d in domains] + [("mixed", template.MIXED_DOMAIN)]
    con.register(
        "headers",
        pa.table(
            {
                "kind": [k for k, _ in keys],
                "domain": [d for _, d in keys],
                "header": [template.header(k, d) + template.ITEM_SEPARATOR for k, d in keys],
            }
        ),
    )
    separator = _literal(template.ITEM_SEPARATOR)
    rows = con.sql(
        f"""
        SELECT user_id, s.kind, s.domain, item_ids, timestamps, h.header || body AS text, split FROM (
          SELECT user_id, kind, domain, w,
                 list_transform(entries, lambda x: x.item_id) AS item_ids,
                 list_transform(entries, lambda x: x.timestamp) AS timestamps,
                 array_to_string(list_transform(entries, lambda x: x.text), {separator}) AS body,
                 {split_expr('user_id', config.valid_fraction)} AS split
          FROM (
            -- a window's entries sorted by position i (first field; unique in a window): an ORDER BY
            -- inside the aggregate costs several times more than sorting each short list after it
            SELECT user_id, kind, seq_domain AS domain, w,
                   list_sort(list({{'i': i, 'item_id': item_id, 'timestamp': timestamp, 'text': t.text}})) AS entries
            FROM ({positions}) JOIN texts t USING (item_id)
            GROUP BY user_id, kind, seq_domain, w
            HAVING count(*) >= {config.min_items}
          )
        ) s JOIN headers h ON h.kind = s.kind AND h.domain = s.domain
        ORDER BY user_id, s.kind, s.domain, w
        """
    ).to_arrow_table()
    return rows.cast(SEQUENCES)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# The format control's random stream: MurmurHash3's 32-bit finaliser (a bijection) of a seed stepped
# by the golden ratio; md5 (stable across DuckDB versions, unlike hash()) seeds it once per group,
# since md5 per draw costs microseconds.
_SCRAMBLE_MACROS = """
CREATE OR REPLACE TEMP MACRO xorshift(h, s) AS xor(h, h >> s);
CREATE OR REPLACE TEMP MACRO mul32(h, m) AS (h::UBIGINT * m::UBIGINT) % 4294967296;
CREATE OR REPLACE TEMP MACRO fmix32(h) AS
  xorshift(mul32(xorshift(mul32(xorshift(h, 16), 2246822507), 13), 3266489909), 16);
CREATE OR REPLACE TEMP MACRO draw(seed, c) AS fmix32((seed + c::UBIGINT * 2654435769) % 4294967296);
"""


def scrambled_positions(positions: str) -> str:
    """SQL of the format control: `positions` (one row per item of a window: user_id, kind,
    seq_domain, item_id, timestamp, i, n, w) with every item replaced by a random item of the same
    domain from the registered `scramble_pool` (item_id, domain). Needs `_SCRAMBLE_MACROS`.

    The items of one domain in one window (a group of k positions) become k distinct items (real
    histories never repeat an item) drawn uniformly, in random order, from a stream seeded by md5 of
    the user, kind, window and domain, so a user's control documents do not depend on partitioning.
    Where the domain has more than 4k items: 2k draws with replacement, keeping the first k distinct
    (a uniformly random ordered k-subset; cost O(k)). Otherwise, or in the rare case the 2k draws hold
    fewer than k distinct items: the domain's items in a seeded random order, first k (cost O(domain
    size), at most 4k). Lengths, timestamps, domains and windows are untouched.
    """
    return f"""
    WITH pool AS MATERIALIZED (
      SELECT item_id, domain, row_number() OVER (PARTITION BY domain ORDER BY item_id) - 1 AS r,
             count(*) OVER (PARTITION BY domain) AS size
      FROM scramble_pool
    ), slots AS MATERIALIZED (
      SELECT p.* EXCLUDE (item_id), pool.domain AS item_domain, pool.size,
             dense_rank() OVER (ORDER BY p.user_id, p.kind, p.seq_domain, p.w, pool.domain) AS g,
             row_number() OVER (PARTITION BY p.user_id, p.kind, p.seq_domain, p.w, pool.domain ORDER BY p.i) - 1 AS j
      FROM ({positions}) p JOIN pool USING (item_id)
    ), slot_groups AS MATERIALIZED (
      SELECT g, domain, size, k, md5_number_lower(concat_ws(chr(31), user_id, kind, seq_domain, w, domain))
               % 4294967296 AS seed
      FROM (
        SELECT g, any_value(user_id) AS user_id, any_value(kind) AS kind, any_value(seq_domain) AS seq_domain,
               any_value(w) AS w, any_value(item_domain) AS domain, any_value(size) AS size, count(*) AS k
        FROM slots GROUP BY g
      )
    ), sparse AS MATERIALIZED (
      SELECT g, r, any_value(k) AS k, row_number() OVER (PARTITION BY g ORDER BY min(c)) - 1 AS j
      FROM (
        SELECT g, k, draw(seed, c) % size AS r, c
        FROM (SELECT *, unnest(range(2 * k)) AS c FROM slot_groups WHERE 4 * k < size)
      )
      GROUP BY g, r
    ), complete AS MATERIALIZED (
      SELECT g FROM sparse GROUP BY g HAVING count(*) >= any_value(k)
    ), dense_groups AS MATERIALIZED (
      SELECT * FROM slot_groups ANTI JOIN complete USING (g)
    ), picks AS (
      SELECT g, r, j FROM sparse SEMI JOIN complete USING (g)
      UNION ALL
      SELECT g, pool.r, row_number() OVER (PARTITION BY g ORDER BY draw(seed, pool.r)) - 1 AS j
      FROM dense_groups JOIN pool USING (domain)
    )
    SELECT s.user_id, s.kind, s.seq_domain, pool.item_id, s.timestamp, s.i, s.n, s.w
    FROM slots s JOIN picks USING (g, j) JOIN pool ON pool.domain = s.item_domain AND pool.r = picks.r
    """


CATALOG_DOCS = pa.schema(
    [("kind", pa.string()), ("domain", pa.string()), ("item_ids", pa.list_(pa.string())), ("split", pa.string())]
)


def catalog_documents(
    items: pa.Table, config: SequenceConfig, con: duckdb.DuckDBPyConnection | None = None
) -> pa.Table:
    """Catalogue-replay documents of `items` (item_id, domain): per domain and split, items in a
    stable hashed order, cut into windows of at most `catalog_items`. Items are split by a hash of
    item_id with the users' valid fraction, so 'valid' catalogue text is never trained on."""
    con = con or connect()
    window_macros(con)
    con.register("catalog_items", items)
    return con.sql(
        f"""
        WITH split_items AS (
          SELECT item_id, domain, {split_expr('item_id', config.valid_fraction)} AS split,
                 md5(item_id) AS order_key FROM catalog_items
        ), numbered AS (
          SELECT *, row_number() OVER (PARTITION BY domain, split ORDER BY order_key, item_id) - 1 AS i,
                 count(*) OVER (PARTITION BY domain, split) AS n
          FROM split_items
        )
        SELECT 'catalog' AS kind, domain, list(item_id ORDER BY i) AS item_ids, split
        FROM (SELECT *, window_of(i, n, {config.catalog_items}) AS w FROM numbered)
        GROUP BY domain, split, w
        ORDER BY domain, split, w
        """
    ).to_arrow_table().cast(CATALOG_DOCS)
