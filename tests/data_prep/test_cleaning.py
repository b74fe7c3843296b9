import pyarrow as pa
import pytest

from cprec.core.schemas import ITEMS, RAW_EVENTS, RAW_ITEMS
from cprec.data_prep import cleaning


def events(rows):
    """rows: (user, item, domain, timestamp[, file, line])."""
    full = [(*r, "ev.jsonl", i + 1) if len(r) == 4 else r for i, r in enumerate(rows)]
    return pa.table(list(zip(*full)), schema=RAW_EVENTS) if full else RAW_EVENTS.empty_table()


def items(rows, ratings=None):
    """rows: (item, domain, title[, file, line]); ratings: (rating_number, average_rating) per row."""
    ratings = ratings or [(None, None)] * len(rows)
    full = [
        (r[0], r[1], r[2], "Acme", "Tools", None, *rated, *(r[3:] or ("meta.jsonl", i + 1)))
        for i, (r, rated) in enumerate(zip(rows, ratings))
    ]
    return pa.table(list(zip(*full)), schema=RAW_ITEMS)


def test_dedupe_items_keeps_first_row_by_file_and_line_and_lists_untitled():
    raw = items(
        [
            ("a", "Books", "Later title", "meta_b.jsonl", 1),
            ("a", "Books", "First title", "meta_a.jsonl", 9),
            ("b", "Books", "   ", "meta_a.jsonl", 10),
            ("c", "Books", "None", "meta_a.jsonl", 11),
        ]
    )
    catalogue, dropped = cleaning.dedupe_items(cleaning.with_item_text(raw))
    assert catalogue["item_id"].to_pylist() == ["a", "b", "c"]
    assert catalogue["text"].to_pylist()[0] == "[Books] First title | brand: Acme | category: Tools"
    assert catalogue["text"].to_pylist()[1:] == ["", ""]
    reasons = sorted(zip(dropped["reason"].to_pylist(), dropped["source_file"].to_pylist(), dropped["line"].to_pylist()))
    assert reasons == [
        (cleaning.DUPLICATE_ITEM, "meta_b.jsonl", 1),
        (cleaning.UNTITLED_ITEM, "meta_a.jsonl", 10),
        (cleaning.UNTITLED_ITEM, "meta_a.jsonl", 11),
    ]
    assert set(dropped["status"].to_pylist()) == {"skip"}


def test_item_texts_carry_ratings_only_when_asked():
    raw = items(
        [("a", "Books", "Atlas"), ("b", "Books", "Bible"), ("c", "Books", "Cookbook"), ("d", "Books", "Diary")],
        ratings=[(1234, 4.26), (1, None), (0, None), (None, 3.0)],
    )
    plain = "[Books] {} | brand: Acme | category: Tools"
    assert cleaning.with_item_text(raw)["text"].to_pylist() == [
        plain.format(title) for title in ("Atlas", "Bible", "Cookbook", "Diary")
    ]
    assert cleaning.with_item_text(raw, item_ratings=True)["text"].to_pylist() == [
        plain.format("Atlas") + " | rating: 4.3 of 5, 1,234 ratings",
        plain.format("Bible") + " | 1 rating",
        plain.format("Cookbook"),  # no ratings, nothing to say
        plain.format("Diary"),  # an average without a count is not written
    ]


def test_clean_events_dedupes_to_earliest_and_rejects_unknown_items():
    catalogue = pa.table(
        {"item_id": ["i1", "i2", "i3"], "domain": ["Books"] * 3, "text": ["t1", "t2", ""]}, schema=ITEMS
    )
    raw = events(
        [
            ("u1", "i1", "Books", 300),
            ("u1", "i1", "Books", 100),  # earliest of the pair: kept
            ("u1", "i2", "Books", 100),  # same timestamp as i1: ordered by item id
            ("u1", "zz", "Books", 50),  # unknown item
            ("u1", "i3", "Books", 60),  # untitled item
            ("u2", "i1", "Books", 100, "ev.jsonl", 90),
            ("u2", "i1", "Books", 100, "ev.jsonl", 80),  # tie on time: earlier line wins
        ]
    )
    clean, dropped = cleaning.clean_events(raw, cleaning.titled(catalogue))
    assert sorted(clean.to_pylist(), key=lambda r: (r["user_id"], r["timestamp"], r["item_id"])) == [
        {"user_id": "u1", "item_id": "i1", "domain": "Books", "timestamp": 100},
        {"user_id": "u1", "item_id": "i2", "domain": "Books", "timestamp": 100},
        {"user_id": "u2", "item_id": "i1", "domain": "Books", "timestamp": 100},
    ]
    by_line = {line: (reason, status) for line, reason, status in zip(*(dropped[c].to_pylist() for c in ("line", "reason", "status")))}
    assert by_line == {
        1: (cleaning.DUPLICATE_EVENT, "skip"),
        4: (cleaning.UNKNOWN_ITEM, "reject"),
        5: (cleaning.UNTITLED_ITEM, "skip"),
        90: (cleaning.DUPLICATE_EVENT, "skip"),
    }
    assert '"item_id":"zz"' in dropped.filter(pa.compute.equal(dropped["line"], 4))["record"][0].as_py()


def naive_kcore(pairs, k_users, k_items):
    pairs = set(pairs)
    while True:
        users, items_ = {}, {}
        for u, i in pairs:
            users[u] = users.get(u, 0) + 1
            items_[i] = items_.get(i, 0) + 1
        kept = {(u, i) for u, i in pairs if users[u] >= k_users and items_[i] >= k_items}
        if kept == pairs:
            return pairs
        pairs = kept


def test_kcore_over_partitions_reaches_the_naive_fixed_point():
    import random

    rng = random.Random(3)
    pairs = {(f"u{rng.randrange(60)}", f"i{int(rng.paretovariate(1.2)) % 40}") for _ in range(700)}
    table = events([(u, i, "Books", n) for n, (u, i) in enumerate(sorted(pairs))])
    users = sorted({u for u, _ in pairs})
    parts = [table.filter(pa.compute.is_in(table["user_id"], pa.array(users[k::3]))) for k in range(3)]
    survivors, rounds = cleaning.kcore(parts, k_users=5, k_items=4)
    expected = naive_kcore(pairs, 5, 4)
    kept = pa.concat_tables([cleaning.kcore_events(p, survivors, 5) for p in parts])
    assert set(zip(kept["user_id"].to_pylist(), kept["item_id"].to_pylist())) == expected
    assert rounds >= 2 and len(expected) > 0
    # at the fixed point every user and item has degree >= k
    assert sorted(survivors["item_id"].to_pylist()) == sorted({i for _, i in expected})


def test_kcore_per_domain_counts_a_users_degree_in_each_domain():
    rows = [("u1", f"b{n}", "Books", n) for n in range(3)] + [("u1", f"m{n}", "Music", n) for n in range(3)]
    table = events(rows)
    assert cleaning.kcore_events(table, None, k_users=4).num_rows == 6
    assert cleaning.kcore_events(table, None, k_users=4, per_domain=True).num_rows == 0


def test_kcore_disabled_and_max_rounds():
    table = events([("u1", "i1", "Books", 1)])
    assert cleaning.kcore([table], 0, 0) == (None, 0)
    chain = events([(f"u{n}", f"i{m}", "Books", 0) for n in range(10) for m in (n, n + 1)])
    with pytest.raises(cleaning.CPRecError, match="max_rounds"):
        cleaning.kcore([chain], 2, 2, max_rounds=1)
