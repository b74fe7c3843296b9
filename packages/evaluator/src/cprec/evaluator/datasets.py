"""Downstream datasets (docs/design.md §7): cleaned by data_prep, split leave-one-out by time, on disk.

A dataset comes from a raw source, cleaned by data_prep's own `build(..., stop_after='interactions')`
(no second cleaning implementation), or from an existing data_prep output directory. Per user,
ordered by (timestamp, item_id): the last item is the test target, the second last the validation
target, the rest the training history; users with fewer than 3 events are left out. The catalogue
is the dataset's items.parquet. The split is written to `<out_dir>/datasets/<name>/` (items.parquet
with the catalogue index, interactions.parquet with a `split` column, stats.json) and reused while
its inputs are unchanged, so every method, and every re-run, sees the same data.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cprec.core import schemas, storage
from cprec.core.config import config_digest, load_config
from cprec.core.errors import CPRecError
from cprec.core.template import TEMPLATE_VERSION
from cprec.core.world import load_world, world_source
from cprec.evaluator.config import DatasetConfig, EvalConfig, SourceSpec

SPLIT_VERSION = "1"
MIN_EVENTS = 3  # one training item at least, then validation and test


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


def dataset_specs(config: EvalConfig) -> list[DatasetConfig]:
    """The explicit `datasets`, or the `downstream` entries of the world.json at `world`."""
    if config.datasets:
        for i, spec in enumerate(config.datasets):  # world names are checked by load_world
            storage.safe_name(spec.name, f"eval config: datasets[{i}].name")
        return list(config.datasets)
    world = load_world(config.world)
    entries = world.get("downstream")
    if not isinstance(entries, list):
        raise CPRecError(f"world file {config.world} has no `downstream` list")
    specs = []
    fields = {f.name for f in dataclasses.fields(SourceSpec)}
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not entry.get("name"):
            raise CPRecError(f"world file {config.world}: downstream[{i}] needs a `name` and a `source`")
        source = world_source(config.world, entry.get("source"), f"downstream[{i}].source")
        spec = SourceSpec(**{k: v for k, v in source.items() if k in fields})
        specs.append(DatasetConfig(name=entry["name"], platform=entry.get("platform", ""), source=spec))
    if not specs:
        raise CPRecError(f"world file {config.world} lists no downstream datasets")
    return specs


def prepare_datasets(config: EvalConfig) -> list[SplitDataset]:
    return [prepare_dataset(spec, config) for spec in dataset_specs(config)]


def prepare_dataset(spec: DatasetConfig, config: EvalConfig) -> SplitDataset:
    """Builds (or reuses) the split of one dataset under `<out_dir>/datasets/<name>`."""
    target = storage.join(config.out_dir, "datasets", spec.name)
    digest = config_digest(spec, config.build if not spec.data_dir else {}, TEMPLATE_VERSION, SPLIT_VERSION)
    stats_uri = storage.join(target, schemas.STATS_FILE)
    complete = storage.exists(storage.join(target, schemas.SUCCESS_MARKER))
    if complete and not config.rebuild and _read_json(stats_uri).get("digest") == digest:
        return load_split(target)
    with storage.atomic_output(target, "eval dataset") as staging:
        source_dir = spec.data_dir or build_source(spec, config.build, storage.join(staging, "prepared"))
        write_split(source_dir, staging, spec, digest)
    return load_split(target)


def build_source(spec: DatasetConfig, build_options: dict, out_dir: str) -> str:
    """Cleans the raw source with data_prep's own build, stopping after the interactions."""
    try:
        from cprec.data_prep.build import BuildConfig, build
    except ModuleNotFoundError as exc:
        raise CPRecError(
            f"dataset {spec.name!r} has a raw source; building it needs cprec-data-prep ({exc})"
        ) from exc
    base = {
        **build_options,
        "out_dir": out_dir,
        "world": "",
        "sources": [dataclasses.asdict(spec.source)],
        "stop_after": "interactions",
    }
    return build(load_config(BuildConfig, base=base))


def write_split(source_dir: str, out_dir: str, spec: DatasetConfig, digest: str) -> None:
    """The leave-one-out split by time, in DuckDB over the data_prep tables."""
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
        "digest": digest,
        "template_version": TEMPLATE_VERSION,
        "split_version": SPLIT_VERSION,
        "source": spec.data_dir or dataclasses.asdict(spec.source),
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
    pq.write_table(split, f"{path}/interactions.parquet", filesystem=fs)
    with fs.open_output_stream(f"{path}/{schemas.STATS_FILE}") as stream:
        stream.write(json.dumps(stats, indent=2, sort_keys=True).encode())


def _split_counts(con) -> tuple[int, int, float]:
    users, train_events = con.execute(
        "SELECT count(DISTINCT user_id), count(*) FILTER (WHERE split = 'train') FROM split"
    ).fetchone()
    mean = con.execute("SELECT avg(n) FROM (SELECT count(*) AS n FROM split GROUP BY user_id)").fetchone()[0]
    return int(users), int(train_events), float(mean)


def load_split(uri: str) -> SplitDataset:
    """Reads a split written by `write_split` into memory."""
    storage.require_complete(uri, "dataset split")
    stats = _read_json(storage.join(uri, schemas.STATS_FILE))
    catalogue = _read_table(storage.join(uri, schemas.ITEMS_FILE), "catalogue")
    split = _read_table(storage.join(uri, "interactions.parquet"), "split").to_pydict()
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


def _read_json(uri: str) -> dict:
    return storage.read_json(uri) if storage.exists(uri) else {}
