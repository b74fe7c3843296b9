"""End-to-end builds through local Ray: the output contract field by field, determinism, bad input."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from amazon_fixture import DOMAINS, write_world

from cprec.core import template
from cprec.core.config import load_config
from cprec.core.errors import CPRecError
from cprec.core.schemas import INTERACTIONS, ITEMS, SEQUENCES, TOKENS
from cprec.data_prep import cleaning
from cprec.data_prep.build import BuildConfig, build

BLOCK = 64


def config(src: Path, out: Path, *overrides: str) -> BuildConfig:
    return load_config(
        BuildConfig,
        overrides=[
            f"out_dir={out}",
            f"sources=[{{format: amazon2023, path: '{src}'}}]",
            "partitions=3",
            "task_cpus=0.5",
            "progress_bars=false",
            "cleaning.k_users=4",
            "cleaning.k_items=4",
            "sequences.max_items=4",
            "sequences.valid_fraction=0.2",
            "sequences.catalog_items=5",
            "tokens.vocab_size=400",
            f"tokens.block_len={BLOCK}",
            *overrides,
        ],
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    src = write_world(tmp_path_factory.mktemp("world") / "src")
    # one sparse user and one rare item, so that the k-core has something to remove
    with open(src / "Books.jsonl", "a") as f:
        f.writelines(json.dumps({"user_id": "SPARSE", "parent_asin": item, "timestamp": 1_700_000_000_000 + n}) + "\n" for n, item in enumerate(["BO0000", "BO0001"]))
    with open(src / "meta_Books.jsonl", "a") as f:
        f.write(json.dumps({"parent_asin": "RARE", "title": "Rare book"}) + "\n")
    with open(src / "Books.jsonl", "a") as f:
        f.write(json.dumps({"user_id": "U001", "parent_asin": "RARE", "timestamp": 1_700_000_000_000}) + "\n")
    return src


@pytest.fixture(scope="module")
def built(world, tmp_path_factory, ray_local):
    out = tmp_path_factory.mktemp("build") / "out"
    assert build(config(world, out)) == str(out)
    return out


def read(path: Path) -> pa.Table:
    return pq.read_table(path)


def read_dir(path: Path) -> pa.Table:
    return pa.concat_tables([pq.read_table(p) for p in sorted(path.glob("part-*.parquet"))])


def source_events(world: Path) -> list[dict]:
    rows = []
    for domain in DOMAINS:
        for line in (world / f"{domain}.jsonl").read_text().splitlines():
            record = json.loads(line)
            rows.append((record["user_id"], record["parent_asin"], domain, record["timestamp"]))
    return rows


def test_output_layout(built):
    names = {p.relative_to(built).as_posix() for p in built.rglob("*") if p.is_file()}
    assert {"_SUCCESS", "items.parquet", "stats.json", "rejects/part-00000.parquet"} <= names
    assert {f"interactions/part-0000{p}.parquet" for p in range(3)} <= names
    assert {f"sequences/part-0000{p}.parquet" for p in range(3)} <= names
    assert not any(n.startswith("_work") for n in names)
    kinds = {tuple(n.split("/")[1:3]) for n in names if n.startswith("tokens/")}
    assert kinds == {(s, k) for s in ("train", "valid") for k in ("domain", "mixed", "catalog")}


def test_interactions_are_the_k_core_of_the_deduplicated_events(built, world):
    interactions = read_dir(built / "interactions")
    assert interactions.schema == INTERACTIONS
    pairs = {(u, i) for u, i, _, _ in source_events(world)}
    k = 4
    while True:  # reference k-core over the all-domain graph
        users, items = {}, {}
        for u, i in pairs:
            users[u] = users.get(u, 0) + 1
            items[i] = items.get(i, 0) + 1
        kept = {(u, i) for u, i in pairs if users[u] >= k and items[i] >= k}
        if kept == pairs:
            break
        pairs = kept
    got = list(zip(interactions["user_id"].to_pylist(), interactions["item_id"].to_pylist()))
    assert len(got) == len(set(got)) and set(got) == pairs
    assert "SPARSE" not in {u for u, _ in got} and "RARE" not in {i for _, i in got}
    for part in sorted((built / "interactions").glob("*.parquet")):
        rows = read(part).to_pylist()
        keys = [(r["user_id"], r["timestamp"], r["item_id"]) for r in rows]
        assert keys == sorted(keys)


def test_items_file(built, world):
    items = read(built / "items.parquet")
    assert items.schema == ITEMS
    assert items["item_id"].to_pylist() == sorted(items["item_id"].to_pylist())
    meta = {}
    for domain in DOMAINS:
        for line in (world / f"meta_{domain}.jsonl").read_text().splitlines():
            r = json.loads(line)
            meta.setdefault(r["parent_asin"], template.item_text(domain, r["title"], r.get("store"), (r.get("categories") or [None])[-1]))
    assert {i: t for i, t in zip(items["item_id"].to_pylist(), items["text"].to_pylist())} == {
        i: meta[i] for i in items["item_id"].to_pylist()
    }
    assert set(items["item_id"].to_pylist()) == set(read_dir(built / "interactions")["item_id"].to_pylist())


def test_sequences_rebuild_each_users_history(built):
    seqs = read_dir(built / "sequences")
    assert seqs.schema == SEQUENCES
    interactions = read_dir(built / "interactions").to_pylist()
    texts = dict(zip(*(read(built / "items.parquet")[c].to_pylist() for c in ("item_id", "text"))))
    history: dict = {}
    for r in sorted(interactions, key=lambda r: (r["user_id"], r["timestamp"], r["item_id"])):
        history.setdefault((r["user_id"], "domain", r["domain"]), []).append((r["item_id"], r["timestamp"]))
        history.setdefault((r["user_id"], "mixed", "all"), []).append((r["item_id"], r["timestamp"]))
    rebuilt: dict = {}
    splits: dict = {}
    for row in seqs.to_pylist():
        assert 2 <= len(row["item_ids"]) <= 4
        assert row["text"] == template.document(row["kind"], row["domain"], [texts[i] for i in row["item_ids"]])
        rebuilt.setdefault((row["user_id"], row["kind"], row["domain"]), []).extend(zip(row["item_ids"], row["timestamps"]))
        splits.setdefault(row["user_id"], set()).add(row["split"])
    multi_domain = {u for (u, kind, _), h in history.items() if kind == "domain"}
    for key, events in history.items():
        domains_of_user = {d for (u, k, d) in history if u == key[0] and k == "domain"}
        if key[1] == "mixed" and len(domains_of_user) < 2:
            assert key not in rebuilt
        elif len(events) >= 2:
            assert rebuilt[key] == events  # windows cover the whole history, in order
    assert all(len(s) == 1 for s in splits.values())  # a user is wholly train or wholly valid
    assert {"train", "valid"} == set().union(*splits.values()) and multi_domain


def documents_from_tokens(directory: Path, eos: int, pad: int) -> list[list[int]]:
    table = read_dir(directory)
    assert table.schema == TOKENS
    ids = np.array(table["input_ids"].to_pylist())
    docs = np.array(table["document_ids"].to_pylist())
    pos = np.array(table["position_ids"].to_pylist())
    assert ids.shape[1] == BLOCK
    for b in range(len(ids)):
        real = docs[b] >= 0
        assert not (~real[:-1] & real[1:]).any() and (ids[b][~real] == pad).all()
        for d in range(docs[b].max() + 1):
            assert pos[b][docs[b] == d].tolist() == list(range((docs[b] == d).sum()))
    stream = ids[docs >= 0].tolist()
    out, current = [], []
    for token in stream:
        current.append(token)
        if token == eos:
            out.append(current)
            current = []
    assert current == []
    return out


def test_tokens_decode_to_the_documents(built):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(built / "tokenizer"))
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    assert eos is not None and pad is not None and eos != pad
    seqs = read_dir(built / "sequences")
    items = read(built / "items.parquet")
    texts = dict(zip(items["item_id"].to_pylist(), items["text"].to_pylist()))
    catalogued = []
    for split in ("train", "valid"):
        for kind in ("domain", "mixed"):
            expected = [r["text"] for r in seqs.to_pylist() if r["split"] == split and r["kind"] == kind]
            got = documents_from_tokens(built / "tokens" / split / kind, eos, pad)
            assert [tokenizer.decode(d[:-1]) for d in got] == expected
            assert got[0] == tokenizer(expected[0], add_special_tokens=False)["input_ids"] + [eos]
        for doc in documents_from_tokens(built / "tokens" / split / "catalog", eos, pad):
            lines = tokenizer.decode(doc[:-1]).split(template.ITEM_SEPARATOR)
            assert lines[0].startswith("Catalogue of ")
            catalogued += lines[1:]
    assert sorted(catalogued) == sorted(texts.values())


def test_stats_count_every_stage(built, world):
    stats = json.loads((built / "stats.json").read_text())
    interactions = read_dir(built / "interactions")
    seqs = read_dir(built / "sequences")
    n_events = len(source_events(world))
    assert stats["template_version"] == template.TEMPLATE_VERSION
    assert stats["config"]["cleaning"]["k_users"] == 4
    assert stats["records"] == {
        "events": n_events,
        "items": 3 * 12 + 1,
        "total": n_events + 37,
        "rejected": 0,
        "reject_rate": 0.0,
    }
    assert sorted(stats["files"]) == sorted(str(world / f"{p}{d}.jsonl") for d in DOMAINS for p in ("", "meta_"))
    assert stats["kept"] == {
        "events": interactions.num_rows,
        "users": len(set(interactions["user_id"].to_pylist())),
        "items": read(built / "items.parquet").num_rows,
    }
    books = stats["domains"]["Books"]
    assert books["raw_events"] == sum(1 for e in source_events(world) if e[2] == "Books")
    assert books["events"] == sum(1 for d in interactions["domain"].to_pylist() if d == "Books")
    assert books["kcore_removed_events"] == books["events_after_dedupe"] - books["events"] == 3
    assert stats["cleaning"]["kcore"]["rounds"] >= 2
    for kind in ("domain", "mixed"):
        for split in ("train", "valid"):
            n = sum(1 for r in seqs.to_pylist() if r["kind"] == kind and r["split"] == split)
            assert stats["sequences"][kind][split] == n == stats["tokens"][split][kind]["documents"]
    assert stats["tokenization"]["fallback_documents"] == 0
    train_domain = read_dir(built / "tokens/train/domain")
    assert stats["tokens"]["train"]["domain"]["blocks"] == train_domain.num_rows


def test_rebuild_gives_identical_bytes(built, world, tmp_path):
    again = tmp_path / "again"
    build(config(world, again))

    def digests(root: Path) -> dict:
        return {
            p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "stats.json"
        }

    assert digests(again) == digests(built)
    stats = [json.loads((root / "stats.json").read_text()) for root in (built, again)]
    stats[1]["config"]["out_dir"] = stats[0]["config"]["out_dir"]
    assert stats[0] == stats[1]


def write_text_catalogue(root: Path) -> Path:
    """An Office_Products source with metadata, one bad and one duplicate metadata line, and events
    that a text-only catalogue must never read."""
    root.mkdir(parents=True)
    rows = [{"parent_asin": f"OF{i:04d}", "title": f"Zebrawood Quillon Stapler {i}", "store": "Acme"} for i in range(12)]
    lines = [json.dumps(r) for r in rows] + ["{not json", json.dumps(rows[0])]
    (root / "meta_Office_Products.jsonl").write_text("\n".join(lines) + "\n")
    events = [{"user_id": "OFFICE_USER", "parent_asin": f"OF{i:04d}", "timestamp": 1_700_000_000_000 + i} for i in range(12)]
    (root / "Office_Products.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    return root


def test_text_only_catalogues_feed_the_tokenizer_and_replay_but_never_events(built, world, tmp_path, ray_local):
    from transformers import AutoTokenizer

    office = write_text_catalogue(tmp_path / "office")
    out = tmp_path / "out"
    build(config(world, out, f"catalogs=[{{format: amazon2023, path: '{office}'}}]"))
    interactions = read_dir(out / "interactions")
    assert "Office_Products" not in interactions["domain"].to_pylist()
    assert "OFFICE_USER" not in interactions["user_id"].to_pylist()
    assert "Office_Products" not in read(out / "items.parquet")["domain"].to_pylist()
    assert read(out / "interactions/part-00000.parquet").equals(read(built / "interactions/part-00000.parquet"))

    tokenizer = AutoTokenizer.from_pretrained(str(out / "tokenizer"))
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    office_lines = []
    for split in ("train", "valid"):
        for doc in documents_from_tokens(out / "tokens" / split / "catalog", eos, pad):
            lines = tokenizer.decode(doc[:-1]).split(template.ITEM_SEPARATOR)
            if lines[0] == template.header("catalog", "Office_Products"):
                office_lines += lines[1:]
    expected = [template.item_text("Office_Products", f"Zebrawood Quillon Stapler {i}", "Acme", None) for i in range(12)]
    assert sorted(office_lines) == sorted(expected)

    # the tokenizer learnt the catalogue's words: its texts take fewer tokens than without it
    without = AutoTokenizer.from_pretrained(str(built / "tokenizer"))
    assert sum(map(len, tokenizer(expected)["input_ids"])) < sum(map(len, without(expected)["input_ids"]))

    stats = json.loads((out / "stats.json").read_text())
    assert stats["domains"]["Office_Products"] == {
        "catalog_text_items": 12,
        "rejects": {"malformed_json": 1},
        "skips": {cleaning.DUPLICATE_ITEM: 1},
    }
    meta = str(office / "meta_Office_Products.jsonl")
    assert stats["files"][meta] == {"records": 14, "rejects": 1}
    rejects = read(out / "rejects/part-00000.parquet").to_pylist()
    assert {(r["line"], r["status"]) for r in rejects if r["source_file"] == meta} == {(13, "reject"), (14, "skip")}


def corrupt(world: Path, into: Path) -> dict[int, str]:
    """A copy of the world with one bad line of each kind appended to Books.jsonl: line -> reason."""
    import shutil

    shutil.copytree(world, into)
    books = into / "Books.jsonl"
    good = json.loads(books.read_text().splitlines()[0])
    bad = [
        (b'{"user_id": "U001", "parent_asin": ', "malformed_json"),
        (json.dumps({"parent_asin": good["parent_asin"], "timestamp": good["timestamp"]}).encode(), "missing_field:user_id"),
        (json.dumps({**good, "timestamp": "yesterday"}).encode(), "mistyped_field:timestamp"),
        (json.dumps({**good, "user_id": "U\xe9"}).encode("utf-8").replace(b"\\u00e9", b"\xe9\xff"), "non_utf8"),
        (json.dumps({**good, "parent_asin": "NO_SUCH_ITEM"}).encode(), cleaning.UNKNOWN_ITEM),
        (json.dumps({**good, "timestamp": 12}).encode(), "impossible_timestamp"),
        (json.dumps(good).encode(), cleaning.DUPLICATE_EVENT),
    ]
    first = len(books.read_bytes().splitlines()) + 1
    with open(books, "ab") as f:
        f.writelines(line + b"\n" for line, _ in bad)
    return {first + n: reason for n, (_, reason) in enumerate(bad)}


def test_bad_input_is_rejected_line_by_line(world, tmp_path, ray_local):
    expected = corrupt(world, tmp_path / "src")
    out = tmp_path / "out"
    build(config(tmp_path / "src", out, "stop_after=sequences"))
    rejects = read(out / "rejects/part-00000.parquet")
    books = str(tmp_path / "src" / "Books.jsonl")
    got = {
        r["line"]: r["reason"]
        for r in rejects.to_pylist()
        if r["source_file"] == books and r["line"] >= min(expected)
    }
    assert got == expected
    statuses = {r["line"]: r["status"] for r in rejects.to_pylist() if r["source_file"] == books}
    assert statuses[min(expected) + 6] == "skip" and statuses[min(expected)] == "reject"
    assert all(r["record"] for r in rejects.to_pylist())
    stats = json.loads((out / "stats.json").read_text())
    assert stats["records"]["rejected"] == 6
    assert stats["rejects"] == {r: 1 for r in expected.values() if r != cleaning.DUPLICATE_EVENT}
    assert stats["domains"]["Books"]["rejects"][cleaning.UNKNOWN_ITEM] == 1
    assert stats["files"][books]["rejects"] == 6
    assert not (out / "tokens").exists() and (out / "sequences").exists()


def test_reject_rate_above_the_bound_fails_naming_the_worst_file(world, tmp_path, ray_local):
    corrupt(world, tmp_path / "src")
    out = tmp_path / "out"
    with pytest.raises(CPRecError, match=r"max_reject_rate=0\.10%.*worst file .*Books\.jsonl \(6 of \d+ records") as exc:
        build(config(tmp_path / "src", out, "max_reject_rate=0.001"))
    aside = tmp_path / "out.rejected"
    assert str(aside) in str(exc.value)
    assert not out.exists()
    assert read(aside / "rejects/part-00000.parquet").num_rows >= 7
    assert json.loads((aside / "stats.json").read_text())["records"]["rejected"] == 6


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["sequences.min_items=5", "sequences.max_items=3"], "min_items"),
        (["world=x.json"], "either `world` or `sources`"),
        (["stop_after=everything"], "stop_after"),
        (["sources=[{format: amazon2023, path: /nonexistent/dir}]"], "/nonexistent/dir"),
    ],
)
def test_bad_options_and_paths_are_one_line_errors(tmp_path, overrides, message, ray_local):
    with pytest.raises(CPRecError, match=message) as exc:
        build(config(tmp_path, tmp_path / "out", *overrides))
    assert "\n" not in str(exc.value)


def test_empty_sources_are_a_clear_error(tmp_path, ray_local):
    src = tmp_path / "src"
    src.mkdir()
    for domain in DOMAINS[:1]:
        (src / f"{domain}.jsonl").write_text("")
        (src / f"meta_{domain}.jsonl").write_text("")
    with pytest.raises(CPRecError, match="no .*records"):
        build(config(src, tmp_path / "out"))


RETAIL_HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"


def test_online_retail_lines_count_once_against_the_reject_bound(tmp_path, ray_local):
    """8 malformed lines of 108: 7.4% must fail a 5% bound (each line was counted twice: 3.7%)."""
    src = tmp_path / "retail"
    src.mkdir()
    good = [
        f"5{n:05d},{20000 + n % 25},RED MUG {n % 25},2,12/{1 + n % 28}/2010 9:{n % 60:02d},1.5,{17000 + n % 20},United Kingdom"
        for n in range(100)
    ]
    bad = [f"6{n:05d},BROKEN" for n in range(8)]
    (src / "online_retail.csv").write_text("\n".join([RETAIL_HEADER, *good, *bad]) + "\n")
    retail = f"sources=[{{format: online_retail, path: '{src}'}}]"
    with pytest.raises(CPRecError, match=r"reject rate 7\.41% is above max_reject_rate=5\.00%.*\(8 of 108 records"):
        build(config(src, tmp_path / "out", retail, "stop_after=interactions"))


def test_stats_list_what_was_not_read(world, tmp_path, ray_local):
    """Side files under a source path are skipped and listed; RecBole item fields left out of the
    item text are listed per file."""
    src = tmp_path / "src"
    shutil.copytree(world, src)
    (src / "stats.json").write_text("{}")
    (src / "tokenizer").mkdir()
    (src / "tokenizer" / "vocab.json").write_text("{}")
    rb = tmp_path / "rb"
    rb.mkdir()
    users = [f"u{n}" for n in range(6)]
    lines = ["user_id:token\titem_id:token\ttimestamp:float"]
    lines += [f"{u}\tm{i}\t{1_600_000_000 + 60 * i}" for u in users for i in range(5)]
    (rb / "ml.inter").write_text("\n".join(lines) + "\n")
    (rb / "ml.item").write_text(
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
        + "".join(f"m{i}\tFilm {i}\t1995\tDrama Comedy\n" for i in range(5))
    )
    sources = f"sources=[{{format: amazon2023, path: '{src}'}}, {{format: recbole, path: '{rb}'}}]"
    out = tmp_path / "out"
    build(config(src, out, sources, "stop_after=interactions"))
    stats = json.loads((out / "stats.json").read_text())
    assert set(stats["skipped_files"]) == {str(src / "stats.json"), str(src / "tokenizer" / "vocab.json")}
    assert stats["ignored_columns"] == {str(rb / "ml.item"): ["release_year"]}


def test_item_ratings_end_the_texts_of_items_that_have_them(tmp_path, ray_local):
    """A small generated world: with item_ratings every marketplace item's text ends in its metadata's
    ratings and no Online Retail text (a format without them) has any; off, no text has them."""
    import gzip

    from cprec.data_prep.synth import SynthConfig, synthesize

    world = tmp_path / "world"
    sizes = {"users": 120, "items_per_domain": 40, "events_per_user": 20, "retail_users": 60, "retail_items": 40}
    synthesize(SynthConfig(out_dir=str(world), **sizes))
    market, retail = world / "marketplace", world / "retail"
    sources = (
        f"sources=[{{format: amazon2023, path: '{market}', domains: [Books]}}, "
        f"{{format: online_retail, path: '{retail}', domain: Online_Retail}}]"
    )
    texts = {}
    for item_ratings in (True, False):
        out = tmp_path / f"out-{item_ratings}"
        build(config(world, out, sources, "stop_after=interactions", f"item_ratings={item_ratings}"))
        items = read(out / "items.parquet").to_pylist()
        texts[item_ratings] = {r["item_id"]: (r["domain"], r["text"]) for r in items}
    with gzip.open(market / "meta_Books.jsonl.gz", "rt") as f:
        meta = {r["parent_asin"]: r for r in map(json.loads, f)}
    on, off = texts[True], texts[False]
    assert on.keys() == off.keys() and {domain for domain, _ in on.values()} == {"Books", "Online_Retail"}
    for item, (domain, text) in on.items():
        assert "rating" not in off[item][1]
        if domain == "Online_Retail":
            assert text == off[item][1]
            continue
        r = meta[item]
        assert off[item][1] == template.item_text(domain, r["title"], r["store"], r["categories"][-1])
        assert r["rating_number"] > 0  # every item with an event has a rating in the generated world
        ratings = template.ratings_field(r["rating_number"], r["average_rating"])
        assert ratings.startswith("rating: ") and text == off[item][1] + " | " + ratings
