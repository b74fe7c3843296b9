"""The world profile's statistics on logs whose answers are known by hand."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from cprec.data_prep.cleaning import connect
from cprec.pipeline import profile


def log(rows: list[tuple[str, str, int]], domains: list[str] | None = None) -> pa.Table:
    users, items, seconds = zip(*rows)
    table = {"user_id": list(users), "item_id": list(items), "timestamp": [s * 1000 for s in seconds]}
    if domains:
        table["domain"] = domains
    return pa.table(table)


ITEMS = pa.table(
    {
        "item_id": ["a", "b", "c", "d"],
        "text": [
            "[Garden] Sage Linen Pillow | brand: Acme | category: Pillows",
            "[Garden] Sage Linen Throw | brand: Acme | category: Throws",
            "[Garden] Navy Cotton Mug | brand: Zeta | category: Mugs",
            "[Garden] Crimson Wool Scarf | brand: Orbit | category: Scarves",
        ],
    }
)


def stats_of(events: pa.Table) -> dict:
    con = connect(threads=1)
    con.register("events", events)
    con.register("items", ITEMS)
    return profile.event_stats(con, "events", "items")


def test_sizes_popularity_repeats_and_ties():
    # u1: a b a(repeat) c, with b and the repeat in the same second; u2: a; u3: a d
    events = log(
        [("u1", "a", 1), ("u1", "b", 5), ("u1", "a", 5), ("u1", "c", 9), ("u2", "a", 3), ("u3", "a", 1), ("u3", "d", 2)]
    )
    stats = stats_of(events)
    assert (stats["events"], stats["users"], stats["items"]) == (7, 3, 4)
    assert stats["events_per_user"] == {"median": 2.0, "mean": pytest.approx(7 / 3), "p90": pytest.approx(3.6)}
    counts = np.sort(np.array([4, 1, 1, 1]))  # a, b, c, d
    m = len(counts)
    gini = 2 * np.sum(np.arange(1, m + 1) * counts) / (m * counts.sum()) - (m + 1) / m
    assert stats["item_gini"] == pytest.approx(gini)
    assert stats["top1pct_item_share"] == pytest.approx(4 / 7)  # the top 1% of 4 items is one item
    assert stats["repeat_share"] == pytest.approx(1 / 7)
    assert stats["same_second_share"] == pytest.approx(2 / 7)


def test_title_overlap_of_consecutive_items_against_chance():
    # half the users choose a then b (3 of their 7 distinct words shared: sage, linen, acme), half c
    # then d (none shared); the control pairs each previous item with a random event's item
    rows = [
        row for u in range(100) for row in ((f"u{u}", "a" if u % 2 else "c", 1), (f"u{u}", "b" if u % 2 else "d", 2))
    ]
    stats = stats_of(log(rows))
    assert stats["title_overlap_next"] == pytest.approx(3 / 7 / 2)
    # chance: the previous item is a half the time, the random item b half the time
    assert stats["title_overlap_random"] == pytest.approx(3 / 7 / 4, abs=0.05)
    assert stats["title_overlap_lift"] == pytest.approx(stats["title_overlap_next"] / stats["title_overlap_random"])


def test_domain_spread():
    events = log([("u1", "a", 1), ("u1", "b", 2), ("u2", "c", 1)], domains=["Garden", "Books", "Garden"])
    con = connect(threads=1)
    con.register("events", events)
    assert profile.domain_spread(con, "events") == {"domains_per_user": 1.5, "users_in_2plus_domains": 0.5}
