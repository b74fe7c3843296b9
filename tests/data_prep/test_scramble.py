"""The format-control corpus (sequences.scramble): same document shapes, random items, no behaviour."""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from amazon_fixture import write_world

from cprec.core.config import load_config
from cprec.core.schemas import INTERACTIONS
from cprec.data_prep.build import BuildConfig, build
from cprec.data_prep.config import SequenceConfig
from cprec.data_prep.sequences import build_sequences

SHAPE = ("user_id", "kind", "domain", "timestamps", "split")


def tiny_log(seed: int = 0):
    """A log where users choose popular items of a big domain (Books, 300 items: the O(k) draws) and
    up to all items of a small one (Music, 6 items: windows of 3 or 4 take the seeded-shuffle draws)."""
    rng = random.Random(seed)
    catalogue = [(f"B{n:03d}", "Books") for n in range(300)] + [(f"M{n}", "Music") for n in range(6)]
    popular = [f"B{n:03d}" for n in range(20)]
    rows = []
    for u in range(200):
        for n, item in enumerate(rng.sample(popular, rng.randint(1, 9))):
            rows.append((f"u{u}", item, "Books", rng.randrange(10**6)))
        for item in rng.sample([f"M{n}" for n in range(6)], rng.randint(0, 6)):
            rows.append((f"u{u}", item, "Music", rng.randrange(10**6)))
    pool = pa.table({"item_id": [i for i, _ in catalogue], "domain": [d for _, d in catalogue]})
    texts = pa.table({"item_id": pool["item_id"], "text": [f"[{d}] thing {i}" for i, d in catalogue]})
    return pa.table(list(zip(*rows)), schema=INTERACTIONS), texts, pool, dict(catalogue)


def test_scrambled_sequences_keep_every_shape_and_lose_the_choices():
    events, texts, pool, domain_of = tiny_log()
    config = SequenceConfig(max_items=4, valid_fraction=0.2)
    real = build_sequences(events, texts, config).to_pylist()
    config.scramble = True
    fake = build_sequences(events, texts, config, pool=pool)
    # same windows, in the same order, with the same timestamps, split and per-position domain
    assert [tuple(r[c] for c in SHAPE) for r in real] == [
        tuple(f[c] for c in SHAPE) for f in fake.to_pylist()
    ]
    overlap = expected = positions = 0
    picks: Counter = Counter()
    for r, f in zip(real, fake.to_pylist()):
        assert [domain_of[i] for i in f["item_ids"]] == [domain_of[i] for i in r["item_ids"]]
        assert len(set(f["item_ids"])) == len(f["item_ids"])  # real histories never repeat an item
        assert f["text"].splitlines()[1:] == [f"[{domain_of[i]}] thing {i}" for i in f["item_ids"]]
        for domain in {domain_of[i] for i in r["item_ids"]}:
            k = sum(domain_of[i] == domain for i in r["item_ids"])
            expected += k * k / (300 if domain == "Books" else 6)
        overlap += len(set(r["item_ids"]) & set(f["item_ids"]))
        positions += len(r["item_ids"])
        picks.update(i for i in f["item_ids"] if i.startswith("B"))
    # the true items come back about as often as chance says, not always
    assert 0.7 * expected < overlap < 1.3 * expected < 0.5 * positions
    # users only chose 20 popular books; the control draws from all 300 about uniformly
    assert len(picks) > 280 and max(picks.values()) < 4 * sum(picks.values()) / 300
    # the small domain's windows change too
    music = [(r, f) for r, f in zip(real, fake.to_pylist()) if r["domain"] == "Music"]
    assert sum(r["item_ids"] != f["item_ids"] for r, f in music) > 0.7 * len(music)
    # deterministic, whatever the input order
    again = build_sequences(events.take(list(reversed(range(events.num_rows)))), texts, config, pool=pool)
    assert again.equals(fake)


def test_windows_whose_draws_repeat_one_item_still_get_distinct_items():
    # 2 items of 9: the 4 draws are all one item for ~1 window in 729 (2 of these 4000), which must
    # then take the shuffle path instead of losing a position
    rows = [(f"u{u}", f"i{(u + n) % 9}", "Books", n) for u in range(4000) for n in range(2)]
    pool = pa.table({"item_id": [f"i{n}" for n in range(9)], "domain": ["Books"] * 9})
    texts = pa.table({"item_id": pool["item_id"], "text": pool["item_id"]})
    config = SequenceConfig(kinds=["domain"], scramble=True)
    seqs = build_sequences(pa.table(list(zip(*rows)), schema=INTERACTIONS), texts, config, pool=pool)
    assert seqs.num_rows == 4000
    assert all(len(set(ids)) == 2 for ids in seqs["item_ids"].to_pylist())


def test_scramble_needs_a_pool():
    events, texts, _, _ = tiny_log()
    with pytest.raises(ValueError, match="pool"):
        build_sequences(events, texts, SequenceConfig(scramble=True))


# ---------------------------------------------------------------------------- whole builds


def config(src: Path, out: Path, *overrides: str) -> BuildConfig:
    return load_config(
        BuildConfig,
        overrides=[
            f"out_dir={out}",
            f"sources=[{{format: amazon2023, path: '{src}'}}]",
            "partitions=2",
            "task_cpus=0.5",
            "progress_bars=false",
            "cleaning.k_users=3",
            "cleaning.k_items=3",
            "sequences.max_items=4",
            "sequences.valid_fraction=0.2",
            "sequences.catalog_items=5",
            "tokens.vocab_size=400",
            "tokens.block_len=64",
            *overrides,
        ],
    )


@pytest.fixture(scope="module")
def builds(tmp_path_factory, ray_local):
    root = tmp_path_factory.mktemp("scramble")
    src = write_world(root / "src", users=30, items=30)
    outs = {"real": root / "real", "control": root / "control", "again": root / "again"}
    build(config(src, outs["real"]))
    for name in ("control", "again"):
        build(config(src, outs[name], "sequences.scramble=true"))
    return outs


def read_dir(path: Path) -> pa.Table:
    return pa.concat_tables([pq.read_table(p) for p in sorted(path.glob("part-*.parquet"))])


def digests(root: Path, under: str = "") -> dict:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((root / under).rglob("*"))
        if p.is_file() and p.name != "stats.json"
    }


def test_control_build_changes_only_the_documents(builds):
    real, control = builds["real"], builds["control"]
    # interactions, items, tokenizer and catalogue-replay documents are the real build's
    for under in ("interactions", "rejects", "tokenizer", "tokens/train/catalog", "tokens/valid/catalog"):
        assert digests(control, under) == digests(real, under), under
    assert (control / "items.parquet").read_bytes() == (real / "items.parquet").read_bytes()
    real_seqs, fake_seqs = (read_dir(b / "sequences").to_pylist() for b in (real, control))
    assert [tuple(r[c] for c in SHAPE) for r in real_seqs] == [tuple(f[c] for c in SHAPE) for f in fake_seqs]
    items = pq.read_table(real / "items.parquet")
    domain_of = dict(zip(items["item_id"].to_pylist(), items["domain"].to_pylist()))
    tag = re.compile(r"^\[([^\]]+)\]")
    same = total = 0
    for r, f in zip(real_seqs, fake_seqs):
        assert [domain_of[i] for i in f["item_ids"]] == [domain_of[i] for i in r["item_ids"]]
        lines = [line.split("\n") for line in (r["text"], f["text"])]
        assert lines[0][0] == lines[1][0]  # the header
        assert [tag.match(x)[1] for x in lines[0][1:]] == [tag.match(x)[1] for x in lines[1][1:]]
        same += sum(a == b for a, b in zip(r["item_ids"], f["item_ids"]))
        total += len(r["item_ids"])
    assert same < 0.2 * total  # ~1/30 by chance, all of them in the real build
    stats = {name: json.loads((b / "stats.json").read_text()) for name, b in builds.items()}
    assert stats["control"]["format_control"] is True and stats["real"]["format_control"] is False
    for key in ("sequences", "kept", "records"):
        assert stats["control"][key] == stats["real"][key], key
    for split in ("train", "valid"):
        for kind in ("domain", "mixed", "catalog"):
            assert (
                stats["control"]["tokens"][split][kind]["documents"]
                == stats["real"]["tokens"][split][kind]["documents"]
            )
    sequence_counts = {d: s.get("sequences") for d, s in stats["real"]["domains"].items()}
    assert sequence_counts == {d: s.get("sequences") for d, s in stats["control"]["domains"].items()}


def test_control_rebuild_gives_identical_bytes(builds):
    assert digests(builds["again"]) == digests(builds["control"])
    stats = [json.loads((builds[name] / "stats.json").read_text()) for name in ("control", "again")]
    stats[1]["config"]["out_dir"] = stats[0]["config"]["out_dir"]
    assert stats[0] == stats[1]
