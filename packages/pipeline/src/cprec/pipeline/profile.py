"""The profile of a world: the statistics that decide which kind of recommender wins on it.

A text model wins where the next item is predictable from the words of the earlier ones; popularity
wins where a few items take most events; an ID model (SASRec) where histories are long and items
recur across users. So for the pre-training corpus and every downstream dataset, after cleaning:

- sizes: events, users, items; events per user (median, mean, 90th percentile);
- popularity concentration: the Gini coefficient of item event counts and the share of events on
  the top 1% of items;
- repeats (events on an item the user chose before) and same-second ties (events sharing a user's
  second with another of that user's events);
- cross-domain overlap: the domains per pre-training user, and the share of a downstream dataset's
  users who are also pre-training users;
- title predictability: the word overlap (Jaccard, item text without the domain tag) of each event's
  item with the same user's previous item, against the previous item paired with a random event's
  item (the lift: how much more the next item's words repeat the last one's than chance, at equal
  popularity);
- for downstream datasets, the popularity and TF-IDF baselines' test NDCG@10 under the run's own
  evaluation protocol.

Computed with DuckDB over the data build's and the downstream stage's parquet files (read with
data_prep's own reader, so object storage works as local disk does); the baselines
through the evaluator. `cprec run until=profile` gets it for any world without training anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cprec.core import storage

# words of item texts that say nothing about the item: the template's field labels and glue words
STOPWORDS = ("brand", "category", "the", "and", "for", "with", "of", "in", "a", "an", "to", "by", "set")
BASELINES = ("Popularity", "Content (TF-IDF)")
PROFILE_FILE = "profile.json"


@dataclass
class ProfileStage:
    """The `profile` stage's config: what it reads and the baselines' evaluation."""

    out_dir: str
    data_dir: str
    datasets: list[dict]
    eval: dict = field(default_factory=dict)  # EvalConfig of the baselines (the run's eval section)


def produce(stage: ProfileStage) -> dict:
    """Writes <out_dir>/profile.json: {"pretrain": stats, "downstream": {name: stats}}."""
    from cprec.data_prep.cleaning import connect
    from cprec.data_prep.files import read_table

    con = connect(threads=2)
    event_columns, item_columns = ["user_id", "item_id", "timestamp"], ["item_id", "text"]
    con.register(
        "pretrain_events", read_table(storage.join(stage.data_dir, "interactions"), columns=event_columns + ["domain"])
    )
    con.register("pretrain_items", read_table(storage.join(stage.data_dir, "items.parquet"), columns=item_columns))
    pretrain = event_stats(con, "pretrain_events", "pretrain_items")
    pretrain.update(domain_spread(con, "pretrain_events"))
    downstream = {}
    baselines = baseline_ndcg(stage)
    for entry in stage.datasets:
        con.register(
            "events", read_table(storage.join(entry["split_dir"], "interactions.parquet"), columns=event_columns)
        )
        con.register("items", read_table(storage.join(entry["split_dir"], "items.parquet"), columns=item_columns))
        stats = event_stats(con, "events", "items")
        stats["users_in_pretraining"] = _row(
            con,
            "SELECT avg((user_id IN (SELECT user_id FROM pretrain_events))::INT) FROM (SELECT DISTINCT user_id FROM events)",
        )[0]
        stats.update(baselines.get(entry["name"], {}))
        downstream[entry["name"]] = {"platform": entry.get("platform", ""), **stats}
    profile = {"pretrain": pretrain, "downstream": downstream}
    storage.write_json(storage.join(stage.out_dir, PROFILE_FILE), profile)
    return profile


def event_stats(con, events: str, items: str) -> dict[str, Any]:
    """The statistics of one log: `events` and `items` name DuckDB tables with columns
    (user_id, item_id, timestamp in ms) and (item_id, text)."""
    sizes = _row(
        con,
        f"""
        WITH per_user AS (SELECT count(*) AS n FROM {events} GROUP BY user_id)
        SELECT (SELECT count(*) FROM {events}), count(*), (SELECT count(DISTINCT item_id) FROM {events}),
               median(n), avg(n), quantile_cont(n, 0.9)
        FROM per_user
        """,
    )
    popularity = _row(
        con,
        f"""
        WITH counts AS (SELECT count(*) AS n FROM {events} GROUP BY item_id),
        ranked AS (SELECT n, row_number() OVER (ORDER BY n) AS up, row_number() OVER (ORDER BY n DESC) AS down,
                          count(*) OVER () AS m, sum(n) OVER () AS total FROM counts)
        SELECT 2 * sum(up * n) / (max(m) * max(total)) - (max(m) + 1) / max(m),
               sum(n) FILTER (WHERE down <= ceil(0.01 * m)) / max(total)
        FROM ranked
        """,
    )
    repeats, ties = _row(
        con,
        f"""
        SELECT 1 - (SELECT count(*) FROM (SELECT DISTINCT user_id, item_id FROM {events})) / count(*),
               (SELECT sum(n) FILTER (WHERE n > 1) / sum(n) FROM
                   (SELECT count(*) AS n FROM {events} GROUP BY user_id, timestamp // 1000))
        FROM {events}
        """,
    )
    return {
        "events": sizes[0],
        "users": sizes[1],
        "items": sizes[2],
        "events_per_user": {"median": sizes[3], "mean": sizes[4], "p90": sizes[5]},
        "item_gini": popularity[0],
        "top1pct_item_share": popularity[1],
        "repeat_share": repeats,
        "same_second_share": ties or 0.0,
        **title_overlap(con, events, items),
    }


def title_overlap(con, events: str, items: str) -> dict[str, float]:
    """Word overlap of consecutive items of a user against the previous item and a random event's item."""
    stop = ", ".join(f"'{w}'" for w in STOPWORDS)
    row = _row(
        con,
        f"""
        WITH words AS (
            SELECT item_id, list_distinct(list_filter(
                string_split_regex(lower(regexp_replace(text, '^\\[[^\\]]*\\]\\s*', '')), '[^a-z0-9]+'),
                lambda w: length(w) > 1 AND w NOT IN ({stop}))) AS w
            FROM {items}),
        steps AS (
            SELECT user_id, item_id, lag(item_id) OVER (PARTITION BY user_id ORDER BY timestamp, item_id) AS prev
            FROM {events}),
        pairs AS (
            SELECT prev, item_id, row_number() OVER (ORDER BY user_id, item_id, prev) AS k,
                   row_number() OVER (ORDER BY hash(user_id, item_id, prev)) AS shuffled
            FROM steps WHERE prev IS NOT NULL),
        controlled AS (
            SELECT a.prev, a.item_id, b.item_id AS other FROM pairs a JOIN pairs b ON a.k = b.shuffled)
        SELECT avg(len(list_intersect(p.w, n.w)) / greatest(len(list_distinct(list_concat(p.w, n.w))), 1)),
               avg(len(list_intersect(p.w, o.w)) / greatest(len(list_distinct(list_concat(p.w, o.w))), 1))
        FROM controlled c
        JOIN words p ON p.item_id = c.prev JOIN words n ON n.item_id = c.item_id JOIN words o ON o.item_id = c.other
        """,
    )
    consecutive, chance = (row[0] or 0.0), (row[1] or 0.0)
    return {
        "title_overlap_next": consecutive,
        "title_overlap_random": chance,
        "title_overlap_lift": consecutive / chance if chance else None,
    }


def domain_spread(con, events: str) -> dict[str, float]:
    mean, several = _row(
        con,
        f"SELECT avg(n), avg((n >= 2)::INT) FROM (SELECT count(DISTINCT domain) AS n FROM {events} GROUP BY user_id)",
    )
    return {"domains_per_user": mean, "users_in_2plus_domains": several}


def baseline_ndcg(stage: ProfileStage) -> dict[str, dict[str, float]]:
    """Test NDCG@10 of the popularity and TF-IDF baselines per dataset, under the run's protocol."""
    from cprec.core.config import load_config
    from cprec.evaluator.config import EvalConfig
    from cprec.evaluator.evaluate import evaluate

    out = storage.join(stage.out_dir, "baselines")
    methods = [{"kind": "popularity", "name": BASELINES[0]}, {"kind": "content", "name": BASELINES[1]}]
    fixed = {"world": "", "datasets": stage.datasets, "methods": methods, "out_dir": out}
    evaluate(load_config(EvalConfig, base={**stage.eval, **fixed}))
    results = storage.read_json(storage.join(out, "results.json"))
    keys = {BASELINES[0]: "popularity_ndcg@10", BASELINES[1]: "tfidf_ndcg@10"}
    return {
        name: {keys[label]: method["test"]["ndcg@10"] for label, method in entry["methods"].items() if label in keys}
        for name, entry in results["datasets"].items()
    }


def markdown(profile: dict) -> str:
    """The profile as two tables (pre-training corpus; downstream datasets)."""
    p = profile["pretrain"]
    lines = [
        "| corpus | events | users | items | events/user (median, p90) | item Gini | top-1% items' share "
        "| repeats | same-second | domains/user | title overlap: next vs random (lift) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| pre-training | {p['events']:,} | {p['users']:,} | {p['items']:,} | {_lengths(p)} | {p['item_gini']:.2f} "
        f"| {p['top1pct_item_share']:.1%} | {p['repeat_share']:.1%} | {p['same_second_share']:.1%} "
        f"| {p['domains_per_user']:.1f} | {_overlap(p)} |",
        "",
        "| dataset | events | users | items | events/user (median, p90) | item Gini | top-1% items' share "
        "| repeats | same-second | users in pre-training | title overlap: next vs random (lift) "
        "| Popularity NDCG@10 | TF-IDF NDCG@10 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, d in profile["downstream"].items():
        lines.append(
            f"| {name} | {d['events']:,} | {d['users']:,} | {d['items']:,} | {_lengths(d)} | {d['item_gini']:.2f} "
            f"| {d['top1pct_item_share']:.1%} | {d['repeat_share']:.1%} | {d['same_second_share']:.1%} "
            f"| {d['users_in_pretraining']:.0%} | {_overlap(d)} | {_number(d.get('popularity_ndcg@10'))} "
            f"| {_number(d.get('tfidf_ndcg@10'))} |"
        )
    return "\n".join(lines) + "\n"


def _lengths(stats: dict) -> str:
    lengths = stats["events_per_user"]
    return f"{lengths['median']:.0f}, {lengths['p90']:.0f}"


def _overlap(stats: dict) -> str:
    lift = stats["title_overlap_lift"]
    lift_text = f"{lift:.1f}x" if lift is not None else "-"
    return f"{stats['title_overlap_next']:.3f} vs {stats['title_overlap_random']:.3f} ({lift_text})"


def _number(value) -> str:
    return f"{value:.3f}" if value is not None else "-"


def _row(con, sql: str) -> tuple:
    """The one row of an aggregate query, fetched to the end (DuckDB keeps an unfinished result open)."""
    return con.execute(sql).fetchall()[0]
