"""The generated default world: layout, determinism, what the real readers make of it, and its claimed properties."""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from scan_fixture import scan_tables

from cprec.core.errors import CPRecError
from cprec.core.sources import SourceConfig
from cprec.core.template import TEMPLATE_VERSION
from cprec.data_prep import synth
from cprec.data_prep.synth import SynthConfig


def tiny(out_dir: Path, seed: int = 0, **overrides) -> SynthConfig:
    sizes = {
        "users": 120,
        "items_per_domain": 40,
        "events_per_user": 20,
        "retail_users": 60,
        "retail_items": 40,
    }
    return SynthConfig(out_dir=str(out_dir), seed=seed, **{**sizes, **overrides})


def digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "world.json"
    }


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "world"
    synth.synthesize(tiny(out))
    return out


def test_layout_and_manifest(world_dir):
    manifest = json.loads((world_dir / "world.json").read_text())
    assert manifest["template_version"] == TEMPLATE_VERSION and manifest["seed"] == 0
    pretrain = [s["domains"][0] for s in manifest["pretrain"]]
    assert pretrain == [d.name for d in synth.PRETRAIN_DOMAINS] and len(pretrain) == 7
    downstream = manifest["downstream"]
    assert len(downstream) == 5 and {d["platform"] for d in downstream} == {"marketplace", "retail"}
    assert not set(pretrain) & {d["name"] for d in downstream}
    for entry in [*manifest["pretrain"], *(d["source"] for d in downstream)]:
        SourceConfig.from_dict(entry).validate()
        assert Path(entry["path"]).exists()
    for spec in synth.PRETRAIN_DOMAINS + synth.DOWNSTREAM_DOMAINS:
        assert (world_dir / "marketplace" / f"{spec.name}.jsonl.gz").is_file()
        assert (world_dir / "marketplace" / f"meta_{spec.name}.jsonl.gz").is_file()
    assert (world_dir / "retail" / "online_retail.csv").is_file()


def test_files_have_the_real_fields(world_dir):
    with gzip.open(world_dir / "marketplace" / "Books.jsonl.gz", "rt") as f:
        review = json.loads(f.readline())
    assert set(review) == {
        "rating", "title", "text", "asin", "parent_asin", "user_id", "timestamp", "helpful_vote", "verified_purchase",
    }  # fmt: skip
    assert isinstance(review["timestamp"], int) and review["timestamp"] > 1_500_000_000_000
    with gzip.open(world_dir / "marketplace" / "meta_Home_and_Kitchen.jsonl.gz", "rt") as f:
        meta = json.loads(f.readline())
    assert {"parent_asin", "title", "main_category", "store", "categories", "features", "description", "price",
            "details", "average_rating", "rating_number"} <= set(meta)  # fmt: skip
    assert isinstance(meta["categories"], list) and isinstance(meta["details"], dict)
    with open(world_dir / "retail" / "online_retail.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice",
                             "CustomerID", "Country"]  # fmt: skip
    assert any(r["InvoiceNo"].startswith("C") and int(r["Quantity"]) < 0 for r in rows)
    assert any(r["CustomerID"] == "" for r in rows)
    assert all(r["Description"] == r["Description"].upper() for r in rows)
    assert len({r["UnitPrice"] for r in rows}) > 2


def test_same_seed_same_bytes_other_seed_differs(tmp_path, world_dir):
    again = tmp_path / "again"
    synth.synthesize(tiny(again))
    assert digests(again) == digests(world_dir)
    same = json.loads((again / "world.json").read_text().replace(str(again), str(world_dir)))
    assert same == json.loads((world_dir / "world.json").read_text())
    other = tmp_path / "other"
    synth.synthesize(tiny(other, seed=1))
    assert digests(other)["marketplace/Books.jsonl.gz"] != digests(world_dir)["marketplace/Books.jsonl.gz"]


def test_readers_accept_every_line(tmp_path, world_dir):
    manifest = json.loads((world_dir / "world.json").read_text())
    sources = [SourceConfig.from_dict(s) for s in manifest["pretrain"]]
    scanned = scan_tables(tmp_path / "pretrain", sources)
    events, items = scanned["events"].to_pandas(), scanned["items"].to_pandas()
    assert (events["status"] == "ok").all() and len(events) == sum(
        manifest["counts"][s.domains[0]]["events"] for s in sources
    )
    assert (items["status"] == "ok").all() and items["title"].notna().all() and items["category"].notna().all()
    assert set(events["item_id"]) <= set(items["item_id"])

    retail = SourceConfig.from_dict(manifest["downstream"][-1]["source"])
    scanned = scan_tables(tmp_path / "retail", [retail])
    lines = scanned["events"].to_pandas()
    assert (lines["status"] != "reject").all()
    reasons = set(lines.loc[lines["status"] == "skip", "reason"])
    assert reasons == {"cancellation", "no_customer_id", "non_product_code"}
    assert (lines["status"] == "ok").sum() == manifest["counts"]["Online_Retail"]["events"]
    retail_items = scanned["items"].to_pandas()
    title = retail_items.loc[retail_items["status"] == "ok", "title"].iloc[0]
    assert title == title.title() and any(word in title for word in synth.ATTRIBUTES["color"])


def test_validation_errors():
    with pytest.raises(CPRecError, match="users must be at least 1"):
        SynthConfig(users=0).validate()
    with pytest.raises(CPRecError, match="recency_weight must be within"):
        SynthConfig(recency_weight=1.5).validate()
    with pytest.raises(CPRecError, match="not before end_date"):
        SynthConfig(start_date="2024-01-01").validate()
    with pytest.raises(CPRecError, match="not an ISO date"):
        SynthConfig(end_date="June").validate()


# ----------------------------------------------------------------------------- the world's properties


@pytest.fixture(scope="module")
def world() -> synth.World:
    return synth.generate(SynthConfig(out_dir="unused", users=1500, items_per_domain=150, events_per_user=30))


def _chronological(world: synth.World):
    events = world.market_events
    order = np.lexsort((events["timestamp"], events["user"]))
    attributes = np.concatenate([c.attributes for c in world.catalogs])
    return events["user"][order], events["domain"][order], attributes[events["item"][order]]


def test_cross_domain_sequential_dependence(world):
    """The item just chosen in domain X predicts the next choice in domain Y != X beyond lasting taste."""
    user, domain, attributes = _chronological(world)
    nxt = np.flatnonzero((user[1:] == user[:-1]) & (domain[1:] != domain[:-1])) + 1
    adjacent = (attributes[nxt - 1] == attributes[nxt]).mean()
    # same user, another domain, ten events earlier: lasting taste only
    far = nxt - 10
    keep = (far >= 0) & (user[np.maximum(far, 0)] == user[nxt]) & (domain[np.maximum(far, 0)] != domain[nxt])
    distant = (attributes[far[keep]] == attributes[nxt[keep]]).mean()
    # another user's item in the previous domain: no shared taste at all
    shuffled = (attributes[np.random.default_rng(0).permutation(nxt - 1)] == attributes[nxt]).mean()
    assert adjacent > distant + 0.1, (adjacent, distant)
    assert distant > shuffled + 0.05, (distant, shuffled)


def _in_season_share(phase: np.ndarray, attributes: np.ndarray, group: str) -> float:
    """Share of events whose `group` value belongs to the season closest to the event's date."""
    g = synth.GROUPS.index(group)
    peaks = np.array(list(synth.SEASON_PEAKS.values()))
    distance = np.abs((phase[:, None] - peaks[None, :] + 0.5) % 1.0 - 0.5)
    season = np.array(list(synth.SEASON_PEAKS))[distance.argmin(axis=1)]
    value_season = {
        synth.ATTRIBUTES[group].index(value): name for name, values in synth.SEASONAL[group].items() for value in values
    }
    return float(np.mean([value_season[v] == s for v, s in zip(attributes[:, g], season, strict=True)]))


def test_seasonal_palettes_and_motifs(world):
    """Colours and themes follow the season of the event's date on both platforms; without seasons, 1 in 4."""
    events = world.market_events
    attributes = np.concatenate([c.attributes for c in world.catalogs])[events["item"]]
    phase = synth.year_phase(events["timestamp"])
    for group in synth.SEASONAL:
        assert _in_season_share(phase, attributes, group) > 0.3
    flat = synth.generate(
        SynthConfig(out_dir="unused", users=400, items_per_domain=60, events_per_user=20, seasonal_weight=0.0)
    )
    flat_attributes = np.concatenate([c.attributes for c in flat.catalogs])[flat.market_events["item"]]
    flat_phase = synth.year_phase(flat.market_events["timestamp"])
    assert abs(_in_season_share(flat_phase, flat_attributes, "color") - 0.25) < 0.05
    sales = world.retail_lines["kind"] == 0
    retail_attributes = world.retail_catalog.attributes[world.retail_lines["item"][sales]]
    retail_phase = synth.year_phase(world.retail_lines["time"][sales])
    assert _in_season_share(retail_phase, retail_attributes, "theme") > 0.3


def test_interleaved_multi_domain_users(world):
    user, domain, _ = _chronological(world)
    domains_per_user = [len(np.unique(domain[user == u])) for u in range(200)]
    assert np.mean(domains_per_user) >= 3
    switches = (domain[1:] != domain[:-1])[user[1:] == user[:-1]].mean()
    assert 0.3 < switches < 0.95
    per_user = np.bincount(world.market_events["user"])
    assert per_user.max() > 2 * np.median(per_user)  # activity is long-tailed


def test_popularity_mild_in_pretraining_stronger_downstream(world):
    def gini(counts: np.ndarray) -> float:
        counts = np.sort(counts)
        n = len(counts)
        return float((2 * np.arange(1, n + 1) - n - 1) @ counts / (n * counts.sum()))

    events = world.market_events
    ginis = [
        gini(np.bincount(events["item"][events["domain"] == d] - c.offset, minlength=c.size))
        for d, c in enumerate(world.catalogs)
    ]
    pretrain, downstream = ginis[: len(synth.PRETRAIN_DOMAINS)], ginis[len(synth.PRETRAIN_DOMAINS) :]
    assert max(pretrain) < 0.3, pretrain
    assert np.mean(downstream) > np.mean(pretrain)


def test_attribute_words_shared_by_every_domain(world_dir):
    """Nearly every attribute word appears in the titles of every domain (40 items each here), on both platforms."""
    vocabulary = {w.lower() for group in ("color", "style", "material", "theme") for w in synth.ATTRIBUTES[group]}
    for spec in synth.PRETRAIN_DOMAINS + synth.DOWNSTREAM_DOMAINS:
        with gzip.open(world_dir / "marketplace" / f"meta_{spec.name}.jsonl.gz", "rt") as f:
            words = {w.strip(",:()-").lower() for line in f for w in json.loads(line)["title"].split()}
        assert len(vocabulary & words) > 0.8 * len(vocabulary), spec.name
    with open(world_dir / "retail" / "online_retail.csv") as f:
        words = {w.lower() for row in csv.DictReader(f) for w in row["Description"].split()}
    assert len(vocabulary & words) > 0.8 * len(vocabulary)


def test_unwritten_taste_steers_choices_by_qualities_no_text_shows():
    """With unwritten_taste, a user's chosen items lean to their own latent qualities beyond chance;
    the attribute words the titles spell stay what they were drawn as (the same catalogues)."""
    latent = synth.generate(tiny(Path("unused"), unwritten_taste=2.0))
    plain = synth.generate(tiny(Path("unused")))
    assert all(c.unwritten is not None for c in latent.catalogs) and latent.retail_catalog.unwritten is not None
    assert all(np.array_equal(a.attributes, b.attributes) for a, b in zip(latent.catalogs, plain.catalogs))
    assert all(c.unwritten is None for c in plain.catalogs)  # the default draws nothing more: same worlds
    stream = np.random.default_rng(np.random.SeedSequence(0).spawn(9)[8])  # generate()'s draws, in its order
    for catalog in latent.catalogs:
        assert np.array_equal(stream.normal(size=catalog.unwritten.shape).astype(np.float32), catalog.unwritten)
    users = stream.normal(size=(120, synth.UNWRITTEN_DIMS)) / np.sqrt(synth.UNWRITTEN_DIMS)
    events = latent.market_events
    qualities = np.concatenate([c.unwritten for c in latent.catalogs])
    affinity = np.einsum("ek,ek->e", users[events["user"]], qualities[events["item"]])
    shuffled = np.einsum(
        "ek,ek->e", users[np.random.default_rng(1).permutation(events["user"])], qualities[events["item"]]
    )
    assert affinity.mean() > shuffled.mean() + 0.3, (affinity.mean(), shuffled.mean())
