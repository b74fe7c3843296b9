"""Cleaning (docs/design.md §3) as DuckDB queries over Arrow tables of one hash partition of users.

Each function sees one partition (or the catalogue) and never the whole event log, so the build
runs them as Ray tasks over partitions. Every record that is dropped comes back as a row of
core's `REJECTS` (a reject or a skip, with its file, line and reason), so nothing disappears silently.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

from cprec.core import template
from cprec.core.errors import CPRecError
from cprec.core.schemas import INTERACTIONS, ITEMS, REJECTS

# Reasons, as short codes like the readers' (`missing_field:user_id`).
UNKNOWN_ITEM = "unknown_item"  # an event whose item has no metadata row (a reject)
UNTITLED_ITEM = "untitled_item"  # an item without a usable title, or an event of one (skips)
DUPLICATE_EVENT = "duplicate_event"  # a later event of a (user, item) pair (a skip)
DUPLICATE_ITEM = "duplicate_item"  # a later metadata row of an item (a skip)

_EVENT_RECORD = (
    "json_object('user_id', user_id, 'item_id', item_id, 'domain', domain, 'timestamp', timestamp)::VARCHAR"
)
_ITEM_RECORD = (
    "json_object('item_id', item_id, 'domain', domain, 'title', title, 'brand', brand, "
    "'category', category)::VARCHAR"
)


def connect(threads: int = 1, memory_limit: str = "") -> duckdb.DuckDBPyConnection:
    config = {"threads": max(1, threads), "preserve_insertion_order": True}
    if memory_limit:
        config["memory_limit"] = memory_limit
    return duckdb.connect(config=config)


def with_item_text(raw_items: pa.Table, item_ratings: bool = False) -> pa.Table:
    """RAW_ITEMS rows with their `text` (core.template.item_text; '' when the title is unusable),
    ending in the item's rating count and average rating when `item_ratings` (BuildConfig.item_ratings).

    Computed where the rows are read (a task per file, in parallel), not in the catalogue-sized
    dedupe that every later step waits for."""
    names = ["domain", "title", "brand", "category"]
    if item_ratings:
        names += ["rating_number", "average_rating"]
    columns = [raw_items.column(name).to_pylist() for name in names]
    texts = [template.item_text(*fields) for fields in zip(*columns)]
    return raw_items.append_column("text", pa.array(texts, pa.string()))


def dedupe_items(raw_items: pa.Table, con: duckdb.DuckDBPyConnection | None = None) -> tuple[pa.Table, pa.Table]:
    """The first metadata row per item_id by (source_file, line), with its text; and the dropped rows.

    `raw_items` are RAW_ITEMS rows with their `text` (`with_item_text`). Returns (the catalogue as
    ITEMS rows sorted by item_id, REJECTS). Items whose text is '' stay in the catalogue so that their
    events are counted as 'untitled', not as 'unknown'; they are also listed as skips.
    """
    con = con or connect()
    con.register("raw_items", raw_items)
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE ranked_items AS
        SELECT *, row_number() OVER (PARTITION BY item_id ORDER BY source_file, line) AS rank FROM raw_items
        """
    )
    catalogue = con.sql(
        "SELECT item_id, domain, text FROM ranked_items WHERE rank = 1 ORDER BY item_id"
    ).to_arrow_table()
    dropped = con.sql(
        f"""
        SELECT source_file, line, CASE WHEN rank > 1 THEN '{DUPLICATE_ITEM}' ELSE '{UNTITLED_ITEM}' END AS reason,
               {_ITEM_RECORD} AS record, 'skip' AS status, domain
        FROM ranked_items WHERE rank > 1 OR text = ''
        ORDER BY rank > 1 DESC, source_file, line
        """
    ).to_arrow_table()
    con.execute("DROP TABLE ranked_items")
    return catalogue.cast(ITEMS), dropped.cast(REJECTS)


def titled(catalogue: pa.Table, con: duckdb.DuckDBPyConnection | None = None) -> pa.Table:
    """(item_id, titled) of a catalogue (`dedupe_items`): all that cleaning events needs of it, without the texts."""
    con = con or connect()
    con.register("catalogue_texts", catalogue)
    return con.sql("SELECT item_id, text <> '' AS titled FROM catalogue_texts").to_arrow_table()


def clean_events(
    events: pa.Table, titles: pa.Table, con: duckdb.DuckDBPyConnection | None = None
) -> tuple[pa.Table, pa.Table]:
    """Drops events of unknown items (rejects), of untitled items and later duplicates of a pair (skips).

    `events` are RAW_EVENTS rows that parsed, `titles` the catalogue's (item_id, titled) (`titled`).
    Returns (INTERACTIONS, REJECTS), unordered: every later step sorts what it writes. A duplicate
    (user, item) keeps its earliest event (ties: source file, then line).
    """
    con = con or connect()
    con.register("events", events)
    con.register("titles", titles)
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE joined AS
        SELECT e.*, c.titled,
               row_number() OVER (PARTITION BY e.user_id, e.item_id ORDER BY e.timestamp, e.source_file, e.line)
                 AS rank
        FROM events e LEFT JOIN titles c USING (item_id)
        """
    )
    clean = con.sql("SELECT user_id, item_id, domain, timestamp FROM joined WHERE titled AND rank = 1").to_arrow_table()
    dropped = con.sql(
        f"""
        SELECT source_file, line,
               CASE WHEN titled IS NULL THEN '{UNKNOWN_ITEM}'
                    WHEN NOT titled THEN '{UNTITLED_ITEM}'
                    ELSE '{DUPLICATE_EVENT}' END AS reason,
               {_EVENT_RECORD} AS record,
               CASE WHEN titled IS NULL THEN 'reject' ELSE 'skip' END AS status,
               domain
        FROM joined WHERE titled IS NOT TRUE OR rank > 1
        """
    ).to_arrow_table()
    con.execute("DROP TABLE joined")
    con.unregister("events")
    return clean.cast(INTERACTIONS), dropped.cast(REJECTS)


def _user_key(per_domain: bool) -> str:
    return "user_id, domain" if per_domain else "user_id"


def _kept(items: pa.Table | None, k_users: int, per_domain: bool, con: duckdb.DuckDBPyConnection) -> str:
    """SQL of the registered `events` of `items` (None = all) whose user has at least k_users of them."""
    where = "TRUE"
    if items is not None:
        con.register("items", items)
        where = "item_id IN (SELECT item_id FROM items)"
    return f"""
        SELECT * FROM (
          SELECT *, count(*) OVER (PARTITION BY {_user_key(per_domain)}) AS degree FROM events WHERE {where}
        ) WHERE degree >= {k_users}
    """


def kcore_events(
    events: pa.Table,
    items: pa.Table | None,
    k_users: int,
    per_domain: bool = False,
    con: duckdb.DuckDBPyConnection | None = None,
) -> pa.Table:
    """The events of `items` (None = all) whose user has at least k_users of them, sorted."""
    con = con or connect()
    con.register("events", events)
    kept = _kept(items, k_users, per_domain, con)
    return con.sql(
        f"SELECT user_id, item_id, domain, timestamp FROM ({kept}) ORDER BY user_id, timestamp, item_id"
    ).to_arrow_table().cast(INTERACTIONS)


def item_user_counts(
    events: pa.Table,
    items: pa.Table | None,
    k_users: int,
    per_domain: bool = False,
    con: duckdb.DuckDBPyConnection | None = None,
) -> pa.Table:
    """One k-core round on one partition: users per item among the users that pass k_users.

    Users are partitioned by hash, so a partition's counts are partial and the driver's reduce sums them.
    """
    con = con or connect()
    con.register("events", events)
    kept = _kept(items, k_users, per_domain, con)
    return con.sql(f"SELECT item_id, count(*)::BIGINT AS users FROM ({kept}) GROUP BY item_id").to_arrow_table()


def surviving_items(counts: list[pa.Table], k_items: int, con: duckdb.DuckDBPyConnection | None = None) -> pa.Table:
    """Items with at least k_items users over all partitions' partial counts (a set: no order)."""
    con = con or connect()
    con.register("counts", pa.concat_tables(counts))
    return con.sql(
        f"SELECT item_id FROM counts GROUP BY item_id HAVING sum(users) >= {k_items}"
    ).to_arrow_table()


def distinct_items(events: pa.Table, con: duckdb.DuckDBPyConnection | None = None) -> pa.Table:
    """The item ids of `events`, as a set (no order: every reader filters or counts with it)."""
    con = con or connect()
    con.register("events", events)
    return con.sql("SELECT DISTINCT item_id FROM events").to_arrow_table()


def kcore(
    partitions: list[pa.Table], k_users: int, k_items: int, per_domain: bool = False, max_rounds: int = 100
) -> tuple[pa.Table | None, int]:
    """Iterative k-core to its fixed point over hash partitions of users, in one process.

    Returns (surviving item set or None when k-core is off, rounds). The only state carried between
    rounds is the item set: it only shrinks, so a user's degree only falls and a removed user stays
    removed; the fixed point is the largest sub-graph where every user and every item has degree >= k.
    The build runs the same steps as Ray tasks (`build._kcore`).
    """
    if k_users == 0 and k_items == 0:
        return None, 0
    items = distinct_items(pa.concat_tables(partitions)) if partitions else distinct_items(INTERACTIONS.empty_table())
    rounds = 0
    while True:
        rounds += 1
        counts = [item_user_counts(p, items, k_users, per_domain) for p in partitions]
        survivors = surviving_items(counts, k_items)
        if survivors.num_rows == items.num_rows:
            return survivors, rounds
        if rounds >= max_rounds:
            raise CPRecError(f"k-core did not reach a fixed point in cleaning.max_rounds={max_rounds} rounds")
        items = survivors
