"""Downstream datasets (docs/design.md §7): cleaned by data_prep, split leave-one-out by time, on disk;
and the fine-tuning (SFT) token data of a split.

A dataset comes from a raw source, cleaned by this package's own `build(..., stop_after='interactions')`
(no second cleaning implementation), or from an existing data_prep output directory. Per user,
ordered by (timestamp, item_id): the last item is the test target, the second last the validation
target, the rest the training history; users with fewer than 3 events are left out. The catalogue
is the dataset's items.parquet. `prepare_split` writes the split to its own directory (items.parquet
with the catalogue index, interactions.parquet with a `split` column, stats.json), which the
evaluator reads as is, so every method sees the same data.

`write_sft_data` turns a split's training histories into packed template documents that the
trainer's `fit` accepts as `data_dir`; the validation split holds, for a seeded share of users,
their history plus the validation item (never a test item).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cprec.core import schemas, storage
from cprec.core.config import load_config
from cprec.core.errors import CPRecError
from cprec.core.template import TEMPLATE_VERSION, document, windows

SPLIT_VERSION = "1"
MIN_EVENTS = 3  # one training item at least, then validation and test
SPLIT_INTERACTIONS_FILE = "interactions.parquet"
# The stage name in a split's _SUCCESS marker: the one splits were written under when the evaluator
# made them, so a split directory from then is still replaceable.
SPLIT_STAGE = "eval dataset"

SFT_STAGE = "sft data"
SFT_TOKENS_DIR = "data"  # under write_sft_data's out_dir: the token dir, the trainer's data_dir
SFT_FILE = "sft.json"  # next to it: the block counts a fine-tuning's length is derived from
SFT_MIN_ITEMS = 2  # a one-item history teaches nothing about sequences (data_prep's min_items)


@dataclass
class SplitSpec:
    """One downstream dataset as plain values: a raw source (a data_prep SourceConfig as a dict) or
    an existing data_prep output dir, with the name and platform its split records."""

    name: str
    platform: str = ""
    source: dict = field(default_factory=dict)
    data_dir: str = ""


@dataclass
class SplitDataset:
    """A downstream dataset in memory: catalogue, per-user training history and the two targets."""

    name: str
    platform: str
    domain: str
    item_ids: list[str]
    item_texts: list[str]
    user_ids: list[str]
    train: list[np.ndarray]  # per user: catalogue indices, oldest first
    valid: np.ndarray  # per user: the validation target's catalogue index
    test: np.ndarray  # per user: the test target's catalogue index
    stats: dict = field(default_factory=dict)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    def history(self, split: str, user: int) -> np.ndarray:
        """What a method may see when predicting `split`'s target: train, plus the validation item for test."""
        if split == "valid":
            return self.train[user]
        if split == "test":
            return np.append(self.train[user], self.valid[user])
        raise ValueError(f"unknown split {split!r}")

    def targets(self, split: str) -> np.ndarray:
        return self.valid if split == "valid" else self.test

    def train_counts(self) -> np.ndarray:
        """Each catalogue item's number of events in the training histories (its popularity)."""
        events = np.concatenate(self.train) if self.train else np.zeros(0, dtype=np.int64)
        return np.bincount(events, minlength=self.n_items)


def prepare_split(spec: SplitSpec, build_options: dict, out_dir: str) -> str:
    """Writes the split of one dataset to `out_dir` (atomically; a raw source is cleaned into
    `<out_dir>/prepared` first); returns `out_dir`."""
    if bool(spec.data_dir) == bool(spec.source.get("path")):
        raise CPRecError(f"dataset {spec.name!r} needs exactly one of source.path or data_dir")
    with storage.atomic_output(out_dir, SPLIT_STAGE) as staging:
        source_dir = spec.data_dir or build_source(spec, build_options, storage.join(staging, "prepared"))
        write_split(source_dir, staging, spec)
    return out_dir


def build_source(spec: SplitSpec, build_options: dict, out_dir: str) -> str:
    """Cleans the raw source with data_prep's own build, stopping after the interactions."""
    from cprec.data_prep.build import BuildConfig, build

    base = {
        **build_options,
        "out_dir": out_dir,
        "world": "",
        "sources": [dict(spec.source)],
        "stop_after": "interactions",
    }
    return build(load_config(BuildConfig, base=base))


def write_split(source_dir: str, out_dir: str, spec: SplitSpec) -> None:
    """The leave-one-out split by time, in DuckDB over the data_prep tables, written into `out_dir`."""
    import duckdb

    items = _read_table(storage.join(source_dir, schemas.ITEMS_FILE), f"{spec.name}: items")
    events = _read_table(storage.join(source_dir, schemas.INTERACTIONS_DIR), f"{spec.name}: interactions")
    con = duckdb.connect()
    con.register("items_in", items.select(["item_id", "domain", "text"]))
    con.register("events_in", events.select(["user_id", "item_id", "domain", "timestamp"]))
    domains = [r[0] for r in con.execute("SELECT DISTINCT domain FROM events_in ORDER BY 1").fetchall()]
    if len(domains) != 1:
        raise CPRecError(
            f"dataset {spec.name!r} must hold exactly one domain, found {domains or 'none'}; "
            "restrict it with source.domains"
        )
    catalogue = con.sql(
        "SELECT (row_number() OVER (ORDER BY item_id) - 1)::INT AS item_index, item_id, domain, text "
        "FROM items_in WHERE domain = $domain ORDER BY item_id",
        params={"domain": domains[0]},
    ).to_arrow_table()
    con.register("catalogue", catalogue)
    split = con.sql(
        f"""
        WITH known AS (
            SELECT e.user_id, c.item_index, e.item_id, e.timestamp
            FROM events_in e JOIN catalogue c USING (item_id)
        ),
        ranked AS (
            SELECT *, count(*) OVER (PARTITION BY user_id) AS n_events,
                   row_number() OVER (PARTITION BY user_id ORDER BY timestamp DESC, item_id DESC) AS from_end
            FROM known
        )
        SELECT user_id, item_index, item_id, timestamp,
               CASE from_end WHEN 1 THEN 'test' WHEN 2 THEN 'valid' ELSE 'train' END AS split
        FROM ranked WHERE n_events >= {MIN_EVENTS}
        ORDER BY user_id, timestamp, item_id
        """
    ).to_arrow_table()
    if split.num_rows == 0:
        raise CPRecError(
            f"dataset {spec.name!r} has no eligible users (none with >= {MIN_EVENTS} events on catalogue items)"
        )
    con.register("split", split)
    users, train_events, mean_events = _split_counts(con)
    stats = {
        "name": spec.name,
        "platform": spec.platform,
        "domain": domains[0],
        "template_version": TEMPLATE_VERSION,
        "split_version": SPLIT_VERSION,
        "source": spec.data_dir or dict(spec.source),
        "items": catalogue.num_rows,
        "users": users,
        "events": split.num_rows,
        "train_events": train_events,
        "mean_events_per_user": round(mean_events, 3),
        "density": round(split.num_rows / (users * catalogue.num_rows), 6),
        "events_in_source": events.num_rows,
        "events_on_unknown_items": con.execute(
            "SELECT count(*) FROM events_in WHERE item_id NOT IN (SELECT item_id FROM catalogue)"
        ).fetchone()[0],
        "users_left_out": con.execute(
            f"SELECT count(*) FROM (SELECT user_id FROM events_in GROUP BY user_id HAVING count(*) < {MIN_EVENTS})"
        ).fetchone()[0],
    }
    fs, path = storage.filesystem(out_dir)
    pq.write_table(catalogue, f"{path}/{schemas.ITEMS_FILE}", filesystem=fs)
    pq.write_table(split, f"{path}/{SPLIT_INTERACTIONS_FILE}", filesystem=fs)
    storage.write_json(storage.join(out_dir, schemas.STATS_FILE), stats)


def _split_counts(con) -> tuple[int, int, float]:
    users, train_events = con.execute(
        "SELECT count(DISTINCT user_id), count(*) FILTER (WHERE split = 'train') FROM split"
    ).fetchone()
    mean = con.execute("SELECT avg(n) FROM (SELECT count(*) AS n FROM split GROUP BY user_id)").fetchone()[0]
    return int(users), int(train_events), float(mean)


def load_split(uri: str) -> SplitDataset:
    """Reads a split written by `prepare_split` into memory."""
    storage.require_complete(uri, "dataset split")
    stats = storage.read_json(storage.join(uri, schemas.STATS_FILE), "split stats")
    catalogue = _read_table(storage.join(uri, schemas.ITEMS_FILE), "catalogue")
    split = _read_table(storage.join(uri, SPLIT_INTERACTIONS_FILE), "split").to_pydict()
    user_ids: list[str] = []
    train: list[list[int]] = []
    valid: list[int] = []
    test: list[int] = []
    for user, item, part in zip(split["user_id"], split["item_index"], split["split"]):
        if not user_ids or user_ids[-1] != user:  # rows are ordered by user, then time
            user_ids.append(user)
            train.append([])
            valid.append(-1)
            test.append(-1)
        if part == "train":
            train[-1].append(item)
        elif part == "valid":
            valid[-1] = item
        else:
            test[-1] = item
    return SplitDataset(
        name=stats["name"],
        platform=stats["platform"],
        domain=stats["domain"],
        item_ids=catalogue.column("item_id").to_pylist(),
        item_texts=catalogue.column("text").to_pylist(),
        user_ids=user_ids,
        train=[np.asarray(t, dtype=np.int64) for t in train],
        valid=np.asarray(valid, dtype=np.int64),
        test=np.asarray(test, dtype=np.int64),
        stats=stats,
    )


def _read_table(uri: str, what: str) -> pa.Table:
    fs, path = storage.filesystem(uri)
    if not storage.exists(uri):
        raise CPRecError(f"{what} not found at {uri}")
    try:
        return pq.read_table(path, filesystem=fs)
    except (pa.ArrowInvalid, OSError) as exc:
        raise CPRecError(f"cannot read {what} at {uri}: {exc}".splitlines()[0]) from exc


def sft_documents(dataset: SplitDataset, max_items: int, valid_fraction: float, seed: int) -> dict[str, list[str]]:
    """Template documents of the training histories ('train') and of history + validation item ('valid')."""
    rng = np.random.default_rng(seed)
    held = rng.random(dataset.n_users) < valid_fraction
    held[rng.integers(dataset.n_users)] = True  # the trainer needs at least one validation document
    out: dict[str, list[str]] = {"train": [], "valid": []}
    for user in range(dataset.n_users):
        histories = [("train", dataset.train[user])]
        if held[user]:
            histories.append(("valid", dataset.history("test", user)))
        for split, items in histories:
            for start, end in windows(len(items), max_items):
                if end - start >= SFT_MIN_ITEMS:
                    texts = [dataset.item_texts[i] for i in items[start:end]]
                    out[split].append(document("domain", dataset.domain, texts))
    if not out["train"]:
        raise CPRecError(f"dataset {dataset.name!r} has no training history of {SFT_MIN_ITEMS}+ items to fine-tune on")
    return out


def write_sft_data(
    split_dir: str,
    tokenizer_uri: str,
    out_dir: str,
    block_len: int,
    max_items: int,
    valid_fraction: float,
    seed: int,
) -> str:
    """The SFT token data of the split at `split_dir`, tokenized with the tokenizer at `tokenizer_uri`
    (the model's to be fine-tuned), written atomically to `out_dir`: the token dir (tokens/train/domain,
    tokens/valid/domain, EOS after every document) under `data/`, and `sft.json` beside it with the
    block counts. Returns the token dir, the fine-tuning's `data_dir`."""
    from cprec.core.tokenizer import load_tokenizer
    from cprec.data_prep import tokens

    dataset = load_split(split_dir)
    tokenizer = load_tokenizer(tokenizer_uri)
    documents = sft_documents(dataset, max_items, valid_fraction, seed)
    tables = {}
    for split, texts in documents.items():
        ids = [row + [tokenizer.eos_token_id] for row in tokenizer(texts)["input_ids"]]
        tables[(split, "domain")] = tokens.pack_documents(ids, block_len, tokenizer.pad_token_id)
    info = {
        "dataset": dataset.name,
        "split": split_dir,
        "tokenizer": tokenizer_uri,
        "block_len": block_len,
        "max_items": max_items,
        "valid_fraction": valid_fraction,
        "seed": seed,
        "documents": {split: len(texts) for split, texts in documents.items()},
        "train_blocks": tables[("train", "domain")].num_rows,
        "valid_blocks": tables[("valid", "domain")].num_rows,
    }
    with storage.atomic_output(out_dir, SFT_STAGE) as staging:
        tokens.write_token_dir(storage.join(staging, SFT_TOKENS_DIR), tables, tokenizer)
        storage.write_json(storage.join(staging, SFT_FILE), info)
    return storage.join(out_dir, SFT_TOKENS_DIR)


def sft_train_blocks(out_dir: str) -> int:
    """The training blocks of SFT data written by `write_sft_data` to `out_dir`."""
    storage.require_complete(out_dir, "sft data")
    return int(storage.read_json(storage.join(out_dir, SFT_FILE), "sft data")["train_blocks"])


def epoch_steps(blocks: int, epochs: float, per_step: int) -> int:
    """Optimizer steps for `epochs` passes over `blocks` token blocks, `per_step` blocks a step
    (micro_batch_size x grad_accum x num_workers); at least one step."""
    if per_step < 1:
        raise ValueError(f"blocks per step must be positive, got {per_step}")
    return max(1, math.ceil(epochs * blocks / per_step))
