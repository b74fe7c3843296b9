import pyarrow as pa
import pytest

from cprec.core import template
from cprec.core.schemas import INTERACTIONS, SEQUENCES
from cprec.data_prep.cleaning import connect
from cprec.data_prep.config import SequenceConfig
from cprec.data_prep.sequences import build_sequences, catalog_documents, window_macros


@pytest.mark.parametrize("m", [1, 2, 3, 7, 50])
def test_sql_windows_match_the_template(m):
    con = connect()
    window_macros(con)
    for n in range(1, 130):
        got = con.sql(f"SELECT window_of(i, {n}, {m}) FROM range({n}) t(i) ORDER BY i").fetchall()
        expected = [w for w, (a, b) in enumerate(template.windows(n, m)) for _ in range(a, b)]
        assert [g[0] for g in got] == expected, (n, m)


def interactions(rows):
    return pa.table(list(zip(*rows)), schema=INTERACTIONS)


TEXTS = pa.table({"item_id": [f"i{n}" for n in range(10)], "text": [f"text {n}" for n in range(10)]})


def test_domain_and_mixed_sequences_ordered_by_time_then_item():
    rows = [
        ("u1", "i3", "Books", 20),
        ("u1", "i1", "Books", 10),
        ("u1", "i2", "Music", 10),  # same time as i1: item id breaks the tie
        ("u1", "i4", "Music", 30),
        ("u2", "i5", "Books", 5),  # a single event: no document
    ]
    seqs = build_sequences(interactions(rows), TEXTS, SequenceConfig(valid_fraction=0.0))
    assert seqs.schema == SEQUENCES
    got = [(r["user_id"], r["kind"], r["domain"], r["item_ids"], r["timestamps"]) for r in seqs.to_pylist()]
    assert got == [
        ("u1", "domain", "Books", ["i1", "i3"], [10, 20]),
        ("u1", "domain", "Music", ["i2", "i4"], [10, 30]),
        ("u1", "mixed", "all", ["i1", "i2", "i3", "i4"], [10, 10, 20, 30]),
    ]
    assert seqs["text"][2].as_py() == template.document("mixed", "all", ["text 1", "text 2", "text 3", "text 4"])
    assert set(seqs["split"].to_pylist()) == {"train"}


def test_windows_min_items_kinds_and_mixed_eligibility():
    rows = [("u1", f"i{n}", "Books", n) for n in range(7)] + [("u1", "i9", "Music", 100)]
    config = SequenceConfig(max_items=3, min_items=2, kinds=["domain"], valid_fraction=0.0)
    seqs = build_sequences(interactions(rows), TEXTS, config)
    # 7 Books items in windows of at most 3 -> 3+2+2; the single Music item is below min_items
    assert [r["item_ids"] for r in seqs.to_pylist()] == [["i0", "i1", "i2"], ["i3", "i4"], ["i5", "i6"]]
    single_domain = [("u2", f"i{n}", "Books", n) for n in range(4)]
    mixed_only = SequenceConfig(kinds=["mixed"], valid_fraction=0.0)
    assert build_sequences(interactions(single_domain), TEXTS, mixed_only).num_rows == 0
    assert build_sequences(interactions(rows), TEXTS, SequenceConfig(kinds=["mixed"], mixed_share=0.0)).num_rows == 0


def test_split_is_a_stable_hash_of_the_user():
    rows = [(f"user{u}", f"i{n}", "Books", n) for u in range(400) for n in range(2)]
    config = SequenceConfig(kinds=["domain"], valid_fraction=0.25)
    first = build_sequences(interactions(rows), TEXTS, config)
    again = build_sequences(interactions(list(reversed(rows))), TEXTS, config)
    assert first.equals(again)
    share = first["split"].to_pylist().count("valid") / first.num_rows
    assert 0.15 < share < 0.35


def test_catalog_documents_cover_every_item_once_per_domain():
    items = pa.table({"item_id": [f"i{n}" for n in range(23)], "domain": ["Books"] * 13 + ["Music"] * 10})
    docs = catalog_documents(items, SequenceConfig(catalog_items=5, valid_fraction=0.2))
    listed = [i for ids in docs["item_ids"].to_pylist() for i in ids]
    assert sorted(listed) == sorted(items["item_id"].to_pylist())
    assert max(len(ids) for ids in docs["item_ids"].to_pylist()) <= 5
    assert set(docs["kind"].to_pylist()) == {"catalog"}
    assert docs.equals(catalog_documents(items.take(list(reversed(range(23)))), SequenceConfig(catalog_items=5, valid_fraction=0.2)))
