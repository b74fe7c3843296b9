"""`cprec data build`: source files -> cleaned interactions -> sequences -> packed token shards.

The flow (docs/data_prep.md has the long form):

1. A Ray task per file or byte range (`scan`) parses its lines in DuckDB (the `readers` parsers
   take the lines that do not have the plain shape) and writes parsed events by hash partition of
   their user to `_work/events/part=<p>/` (unparsed lines go to `part=-1`); items likewise.
2. One Ray task dedupes the item metadata (catalogue-sized); one task per partition joins its
   events with it and drops unknown items, untitled items and duplicate pairs (DuckDB).
3. Rejects and skips are gathered into `rejects/`; past `max_reject_rate` the build stops here.
4. k-core rounds: per-partition tasks count users per item, a reduce task sums the counts
   (catalogue-sized) into the surviving item set, until the set stops shrinking.
5. Per partition: interactions and sequences; then the tokenizer (trained or loaded), every item
   tokenized once with Ray Data, and per partition documents assembled from ids and packed.

The driver only moves counts and object references; partitions, catalogues and tables stay in
tasks. Every file is sorted and written with fixed settings, so a re-run gives identical bytes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from cprec.core import storage, template
from cprec.core.config import option, to_dict
from cprec.core.errors import CPRecError
from cprec.core.schemas import (
    INTERACTIONS_DIR,
    ITEMS,
    ITEMS_FILE,
    RAW_EVENTS,
    REJECTS,
    REJECTS_DIR,
    SEQUENCES_DIR,
    STATS_FILE,
    TOKENIZER_DIR,
    TOKENS_DIR,
)
from cprec.core.sources import SourceConfig
from cprec.core.tokenizer import load_tokenizer
from cprec.core.world import load_world, world_dir, world_source
from cprec.data_prep import cleaning, files, scan, sequences, tokens
from cprec.data_prep.config import CleaningConfig, SequenceConfig, TokenConfig
from cprec.data_prep.readers import EVENT_ROWS

log = logging.getLogger("cprec.data_prep.build")

STAGES = ("interactions", "sequences", "tokens")


@dataclass
class BuildConfig:
    out_dir: str = option("", help="output directory (local, s3:// or gs://), written atomically")
    world: str = option("", help="a world.json (from `cprec data synth`): build its `pretrain` sources")
    sources: list[SourceConfig] = option([], help="sources to build, when no `world` is given")
    catalogs: list[SourceConfig] = option(
        [],
        help="text-only sources: their item texts (never their events) join the tokenizer's training text "
        "and the catalogue-replay documents, as a general LLM knows the words of products it has no "
        "behaviour for",
    )
    world_catalogs: bool = option(
        True, help="with `world`: read its downstream sources as text-only `catalogs` (item texts, never events)"
    )
    item_ratings: bool = option(
        False,
        help="append the item metadata's rating count and average rating to each item's text "
        "(docs/design.md §4); items without them are written as before",
    )
    cleaning: CleaningConfig = option(CleaningConfig(), help="dedupe and k-core")
    sequences: SequenceConfig = option(SequenceConfig(), help="sequence kinds, windows and the validation split")
    tokens: TokenConfig = option(TokenConfig(), help="tokenizer and packing")
    stop_after: str = option("tokens", help="last stage to produce: interactions, sequences or tokens")
    max_reject_rate: float = option(0.05, help="fail when rejected records / records read passes this")
    partitions: int = option(16, help="hash partitions of users; fixed, so outputs do not depend on the cluster")
    task_cpus: float = option(1.0, help="CPUs per Ray task (fractions allowed)")
    task_memory: str = option("", help="DuckDB memory limit per task, e.g. '2GB' ('' = DuckDB's default)")
    progress_bars: bool = option(True, help="show Ray Data progress bars")

    def validate(self) -> None:
        if not self.out_dir:
            raise CPRecError("out_dir is required (where the build writes its output)")
        if self.world and self.sources:
            raise CPRecError("give either `world` or `sources`, not both")
        if not self.world and not self.sources:
            raise CPRecError("nothing to build: set `world` (a world.json) or `sources`")
        if self.stop_after not in STAGES:
            raise CPRecError(f"stop_after must be one of {', '.join(STAGES)}, got {self.stop_after!r}")
        if not 0.0 <= self.max_reject_rate <= 1.0:
            raise CPRecError(f"max_reject_rate must be in [0, 1], got {self.max_reject_rate}")
        if self.partitions < 1:
            raise CPRecError(f"partitions must be >= 1, got {self.partitions}")
        if self.task_cpus <= 0:
            raise CPRecError(f"task_cpus must be > 0, got {self.task_cpus}")
        for source in [*self.sources, *self.catalogs]:
            source.validate()
        self.cleaning.validate()
        self.sequences.validate()
        self.tokens.validate()


def resolve_sources(config: BuildConfig) -> tuple[list[SourceConfig], list[SourceConfig]]:
    """(event sources, text-only catalogue sources): the configured ones, or from the world file the
    `pretrain` sources and, with `world_catalogs`, the downstream sources as catalogues (paths
    relative to the world file)."""
    if not config.world:
        return list(config.sources), list(config.catalogs)
    world = load_world(config.world)
    if not isinstance(world.get("pretrain"), list) or not world["pretrain"]:
        raise CPRecError(f"world file {config.world} has no `pretrain` sources")

    def resolved(entry: Any, where: str) -> SourceConfig:
        source = SourceConfig.from_dict(world_source(config.world, entry, where))
        source.validate()
        return source

    sources = [resolved(entry, f"pretrain[{i}]") for i, entry in enumerate(world["pretrain"])]
    catalogs = list(config.catalogs)
    if config.world_catalogs:
        for i, entry in enumerate(world.get("downstream") or []):
            where = f"downstream[{i}].source"
            catalogs.append(resolved(entry.get("source") if isinstance(entry, dict) else None, where))
    return sources, catalogs


BUILD_STAGE = "data build"  # names the stage in the output's _SUCCESS marker
REJECTS_STAGE = "data build rejects"
REJECTS_SUFFIX = ".rejected"  # <out_dir>.rejected: the rejects of a build that failed the reject bound


def build(config: BuildConfig) -> str:
    """Runs the build; returns the finished output directory (docs/design.md §5 + core.schemas)."""
    import ray

    from cprec.core.raytools import init_ray

    config.validate()
    sources, catalogs = resolve_sources(config)
    # Before Ray starts and before any work: the build must not write into or over what it reads,
    # nor replace what is not its own earlier output.
    for source in [*sources, *catalogs]:
        for domain in [*source.domains, *([source.domain] if source.domain else [])]:
            storage.safe_name(domain, f"source {source.path}: domain")
    inputs = [source.path for source in [*sources, *catalogs]] + ([world_dir(config.world)] if config.world else [])
    storage.check_disjoint(config.out_dir, inputs, "out_dir")
    storage.check_replaceable(config.out_dir, BUILD_STAGE)
    storage.check_replaceable(config.out_dir.rstrip("/") + REJECTS_SUFFIX, REJECTS_STAGE)
    scan_plan = scan.plan(sources, catalogs)  # discovery and header errors come before Ray starts
    init_ray()
    ray.data.DataContext.get_current().enable_progress_bars = config.progress_bars
    with storage.atomic_output(config.out_dir, BUILD_STAGE) as staging:
        _Build(config, sources, catalogs, scan_plan, staging).run()
    return config.out_dir


# ------------------------------------------------------------------------------------ the driver


class _Build:
    def __init__(
        self,
        config: BuildConfig,
        sources: list[SourceConfig],
        catalogs: list[SourceConfig],
        scan_plan: scan.ScanPlan,
        out: str,
    ):
        self.config = config
        self.sources = sources
        self.catalogs = catalogs
        self.units = scan_plan.units
        self.out = out
        self.work = storage.join(out, "_work")
        self.parts = range(config.partitions)
        self.threads = max(1, math.floor(config.task_cpus))  # DuckDB threads inside one task
        self.memory = config.task_memory
        self.stats: dict[str, Any] = {
            "template_version": template.TEMPLATE_VERSION,
            "config": to_dict(config),
            "sources": [to_dict(s) for s in sources],
            "catalogs": [to_dict(s) for s in catalogs],
            # a format-control build (sequences.scramble): documents of random items, no behaviour
            "format_control": config.sequences.scramble,
        }
        # what was under the source paths but not read, so a user can see nothing was lost by accident
        if scan_plan.skipped_files:
            self.stats["skipped_files"] = scan_plan.skipped_files
        if scan_plan.ignored_columns:
            self.stats["ignored_columns"] = scan_plan.ignored_columns

    @contextlib.contextmanager
    def step(self, name: str):
        """Logs each step's wall time (to stderr, not stats.json, which must not change between runs)."""
        start = time.perf_counter()
        yield
        log.warning("cprec data build: %s took %.1f s", name, time.perf_counter() - start)

    def task(self, fn, num_returns: int = 1):
        import ray

        return ray.remote(fn).options(num_cpus=self.config.task_cpus, num_returns=num_returns)

    def run(self) -> None:
        c, threads, memory = self.config, self.threads, self.memory
        with self.step("reading and partitioning"):
            scans = self.read_sources()
            # the catalogue is deduped as soon as its files are read, beside the event scans
            items = self.task(_items_task).remote(self.work, threads, memory, *scans[scan.ITEMS])
            text_catalogue = None
            if self.catalogs:  # only the tokens need it: deduped beside the partitions
                text_catalogue = self.task(_text_catalogue_task).remote(
                    self.work, threads, memory, items, *scans[scan.CATALOG]
                )
            self.check_scanned(scans)
        with self.step("cleaning"):
            items_stats = [_get(items)]
            cleaned = [
                self.task(_clean_task, num_returns=3).remote(self.work, p, c.cleaning, threads, memory)
                for p in self.parts
            ]
            clean_stats = _get([stats for stats, _, _ in cleaned])
            if text_catalogue is not None:
                items_stats.append(_get(text_catalogue))
            reject_stats = _get(self.task(_rejects_task).remote(self.work, self.out, threads, memory))
            self.account(_merged(items_stats), clean_stats, reject_stats)
        with self.step("k-core"):
            survivors = self.kcore([distinct for _, distinct, _ in cleaned], [counts for _, _, counts in cleaned])
        # The format control draws from the final item set: the k-core survivors (every survivor keeps
        # an event at the fixed point), or with k-core off every cleaned item; an object ref, never fetched.
        pool = None
        if c.sequences.scramble and c.stop_after != "interactions":
            pool = survivors
            if pool is None:
                pool, _ = self.task(_union_task, num_returns=2).remote(threads, memory, *[d for _, d, _ in cleaned])
        with self.step("interactions and sequences"):
            final = [
                self.task(_final_task, num_returns=2).remote(
                    self.work, self.out, p, survivors, c.cleaning, c.sequences, c.stop_after, threads, memory, pool
                )
                for p in self.parts
            ]
            partition_stats = _get([stats for stats, _ in final])
            item_counts = _get(
                self.task(_items_file_task).remote(self.work, self.out, threads, memory, *[d for _, d in final])
            )
            self.summarize(partition_stats, item_counts)
        if c.stop_after == "tokens":
            with self.step("tokens"):
                self.tokenize()
        storage.write_text(storage.join(self.out, STATS_FILE), json.dumps(self.stats, indent=2, sort_keys=True) + "\n")
        files.remove(self.work)

    def read_sources(self) -> dict[str, list]:
        """Every scan unit as a Ray task writing the scratch tables: the catalogue units first (the
        catalogue dedupe can then start while events are still read), the rest largest first.
        Returns the tasks' references by purpose."""
        units = self.units
        ranged = [u for u in units if not u.first_line]
        if ranged:
            counts = _get([self.task(scan.count_lines).remote(u) for u in ranged])
            units = scan.number_lines(units, {u.name: n for u, n in zip(ranged, counts)})
        refs: dict[str, list] = {scan.EVENTS: [], scan.ITEMS: [], scan.CATALOG: []}
        for unit in sorted(units, key=lambda u: (u.purpose == scan.EVENTS, -u.size, u.name)):
            ref = self.task(scan.scan_unit).remote(unit, self.work, self.config.partitions, self.config.item_ratings)
            refs[unit.purpose].append(ref)
            if unit.purpose == scan.EVENTS and scan.writes_items(unit):
                refs[scan.ITEMS].append(ref)  # an Online Retail CSV is its own catalogue
        return refs

    def check_scanned(self, scans: dict[str, list]) -> None:
        """Records per file into the stats; a source without events or items is an error."""
        self.scanned = _merged(_get(list({ref: None for refs in scans.values() for ref in refs})))
        for purpose, what, where in ((scan.EVENTS, "event", self.sources), (scan.ITEMS, "item", self.sources)):
            if not storage.exists(storage.join(self.work, scan.OUTPUT_DIRS[purpose])):
                raise CPRecError(f"the sources hold no {what} records: {', '.join(s.path for s in where)}")
        if self.catalogs and not storage.exists(storage.join(self.work, scan.OUTPUT_DIRS[scan.CATALOG])):
            raise CPRecError(f"the catalogs hold no item records: {', '.join(s.path for s in self.catalogs)}")

    def account(self, items_stats: dict, clean_stats: list[dict], reject_stats: dict) -> None:
        """Records and rejects per file and domain; fails past the reject bound (rejects kept aside)."""
        stats = _merged([self.scanned, items_stats, *clean_stats, reject_stats])
        records = stats["records"]
        records["total"] = sum(f["records"] for f in stats["files"].values())
        records["rejected"] = sum(f.get("rejects", 0) for f in stats["files"].values())
        records["reject_rate"] = records["rejected"] / records["total"] if records["total"] else 0.0
        self.stats.update(stats)
        if records["total"] == 0:
            raise CPRecError(f"the sources hold no records: {', '.join(s.path for s in self.sources)}")
        if records["reject_rate"] > self.config.max_reject_rate:
            worst, counts = max(
                stats["files"].items(), key=lambda kv: (kv[1].get("rejects", 0) / kv[1]["records"], kv[0])
            )
            aside = self.keep_rejects_aside()
            raise CPRecError(
                f"reject rate {records['reject_rate']:.2%} is above max_reject_rate={self.config.max_reject_rate:.2%}"
                f"; worst file {worst} ({counts.get('rejects', 0)} of {counts['records']} records rejected); "
                f"rejects and stats written to {aside}"
            )
        if stats["cleaning"]["events_after_dedupe"] == 0:
            raise CPRecError(
                "no events are left after cleaning: every event was rejected or skipped "
                f"(reasons: {json.dumps({**stats.get('rejects', {}), **stats.get('skips', {})})})"
            )

    def keep_rejects_aside(self) -> str:
        import pyarrow.fs as pafs

        aside = self.config.out_dir.rstrip("/") + REJECTS_SUFFIX
        # replaces only an earlier rejects-aside (its marker says so), never someone's directory
        with storage.atomic_output(aside, REJECTS_STAGE) as staging:
            src_fs, src = storage.filesystem(storage.join(self.out, REJECTS_DIR))
            dst_fs, dst = storage.filesystem(storage.join(staging, REJECTS_DIR))
            dst_fs.create_dir(dst, recursive=True)
            pafs.copy_files(src, dst, source_filesystem=src_fs, destination_filesystem=dst_fs)
            stats = json.dumps(self.stats, indent=2, sort_keys=True) + "\n"
            storage.write_text(storage.join(staging, STATS_FILE), stats)
        return aside

    def kcore(self, distinct_refs: list, first_counts: list):
        """Rounds of per-partition counts and a catalogue-sized reduce, until the item set is stable.
        The first round's counts come from the cleaning tasks, which hold each partition already."""
        c, threads, memory = self.config.cleaning, self.threads, self.memory
        kcore_stats = {"k_users": c.k_users, "k_items": c.k_items, "per_domain": c.per_domain, "rounds": 0}
        self.stats["cleaning"]["kcore"] = kcore_stats
        if c.k_users == 0 and c.k_items == 0:
            return None
        _, size = self.task(_union_task, num_returns=2).remote(threads, memory, *distinct_refs)
        size = _get(size)
        kcore_stats["items_before"] = size
        counts = first_counts
        while True:
            kcore_stats["rounds"] += 1
            items, new_size = self.task(_survivors_task, num_returns=2).remote(c.k_items, threads, memory, *counts)
            new_size = _get(new_size)
            if new_size == size:
                kcore_stats["items_after"] = size
                return items
            if kcore_stats["rounds"] >= c.max_rounds:
                raise CPRecError(f"k-core did not reach a fixed point in cleaning.max_rounds={c.max_rounds} rounds")
            size = new_size
            counts = [
                self.task(_count_task).remote(self.work, p, items, c.k_users, c.per_domain, threads, memory)
                for p in self.parts
            ]

    def summarize(self, partition_stats: list[dict], item_counts: dict) -> None:
        merged = _merged(partition_stats)
        domains = self.stats.setdefault("domains", {})
        for domain, counts in sorted(merged.pop("domains", {}).items()):
            domains.setdefault(domain, {}).update(counts)
        for domain, count in item_counts.items():
            domains.setdefault(domain, {})["items"] = count
        for counts in domains.values():
            if "events_after_dedupe" in counts:
                counts["kcore_removed_events"] = counts["events_after_dedupe"] - counts.get("events", 0)
        self.stats.update(merged)
        self.stats["kept"]["items"] = sum(item_counts.values())
        if self.stats["kept"]["events"] == 0:
            k = self.config.cleaning
            raise CPRecError(
                f"no events survive the k-core (cleaning.k_users={k.k_users}, cleaning.k_items={k.k_items}); "
                "lower them or add data"
            )

    def tokenize(self) -> None:
        import ray

        c, threads, memory = self.config, self.threads, self.memory
        spec = _get(self.task(_tokenizer_task).remote(self.work, self.out, c.tokens, bool(self.catalogs)))
        texts = ray.data.read_parquet(storage.join(self.out, ITEMS_FILE))
        if self.catalogs:
            texts = texts.union(ray.data.read_parquet(storage.join(self.work, TEXT_CATALOGUE)))
        item_tokens_uri = storage.join(self.work, "item_tokens")
        texts.map_batches(
            _tokenize_items, fn_kwargs={"spec": spec}, batch_format="pyarrow", num_cpus=c.task_cpus
        ).write_parquet(item_tokens_uri)
        spec_ref = ray.put(spec)
        token_stats = _get(
            [
                self.task(_tokens_task).remote(
                    self.work,
                    self.out,
                    p,
                    c.partitions,
                    spec_ref,
                    c.sequences,
                    c.tokens,
                    bool(self.catalogs),
                    threads,
                    memory,
                )
                for p in self.parts
            ]
        )
        self.stats["tokenizer"] = {
            "source": c.tokens.tokenizer or "byte-level BPE trained on the item texts and the catalogues' texts",
            "eos_id": spec.eos_id,
            "pad_id": spec.pad_id,
            "vocab_size": spec.vocab_size,
        }
        self.stats.update(_merged(token_stats))


def _get(refs):
    """ray.get, with a CPRecError raised inside a task re-raised as itself: one line, no remote traceback."""
    import ray

    try:
        return ray.get(refs)
    except ray.exceptions.RayTaskError as exc:
        if isinstance(exc.cause, CPRecError):
            raise CPRecError(str(exc.cause)) from None
        raise


def _merged(parts: list[Mapping]) -> dict:
    """Sum of nested count dicts."""
    total: dict = {}
    for part in parts:
        for key, value in part.items():
            if isinstance(value, Mapping):
                total[key] = _merged([total.get(key, {}), value])
            else:
                total[key] = total.get(key, 0) + value
    return total


# ---------------------------------------------------------------------- Ray Data batch functions


def _tokenize_items(batch: pa.Table, spec: tokens.TokenizerSpec) -> pa.Table:
    return tokens.item_token_table(batch, spec)


# -------------------------------------------------------------------------------- the Ray tasks
# Each reads its inputs from the scratch directory, writes its outputs and returns counts (and,
# where a later task needs them, catalogue-sized tables as object references the driver never gets).

_DISTINCT = pa.schema([("item_id", pa.string())])
TEXT_CATALOGUE = "text_catalogue.parquet"  # in _work: the text-only catalogues' items
TITLES = "titles.parquet"  # in _work: the catalogue's (item_id, titled), what each partition's cleaning reads


def _partition_events(work: str, part: int) -> pa.Table:
    return files.read_table(storage.join(work, "events", f"part={part}"), EVENT_ROWS)


def _domain_counts(con, sql: str, key: str) -> dict:
    return {domain: {key: n} for domain, n in con.sql(sql).fetchall()}


def _read_catalogue(con, work: str, raw_dir: str, dropped_name: str) -> tuple[pa.Table, pa.Table]:
    """The item rows read into `raw_dir` (registered as 'raw'), deduped into a catalogue; their
    unparsed, duplicate and untitled rows are written to `dropped/<dropped_name>` for rejects/."""
    # every column but the descriptions (the largest) and the ratings: no record uses them, and the
    # text holds the ratings when the build writes them
    unused = ("description", "rating_number", "average_rating")
    columns = [name for name in scan.ITEM_ROWS_WITH_TEXT.names if name not in unused]
    raw = files.read_table(storage.join(work, raw_dir), scan.ITEM_ROWS_WITH_TEXT, columns)
    con.register("raw", raw)
    ok = con.sql(
        f"SELECT {', '.join(n for n in columns if n not in ('status', 'reason', 'record'))} FROM raw WHERE status = 'ok'"
    ).to_arrow_table()
    catalogue, dropped = cleaning.dedupe_items(ok, con)
    bad = con.sql(
        "SELECT source_file, line, reason, record, status, domain FROM raw WHERE status <> 'ok'"
    ).to_arrow_table()
    files.write_table(pa.concat_tables([bad.cast(REJECTS), dropped]), storage.join(work, "dropped", dropped_name))
    return raw, catalogue


def _items_task(work: str, threads: int, memory: str, *scanned: dict) -> dict:
    """The catalogue: metadata rows deduped, once the item files are read (`scanned`, only awaited)."""
    con = cleaning.connect(threads, memory)
    raw, catalogue = _read_catalogue(con, work, "items_raw", "items.parquet")
    files.write_table(catalogue, storage.join(work, "catalogue.parquet"))
    files.write_table(cleaning.titled(catalogue, con), storage.join(work, TITLES))
    con.register("catalogue", catalogue)
    return {
        "records": {"items": raw.num_rows},
        "domains": _merged(
            [
                _domain_counts(con, "SELECT domain, count(*) FROM raw WHERE status = 'ok' GROUP BY domain", "metadata_rows"),
                _domain_counts(
                    con, "SELECT domain, count(*) FROM catalogue WHERE text <> '' GROUP BY domain", "titled_items"
                ),
            ]
        ),
    }


def _text_catalogue_task(work: str, threads: int, memory: str, *awaited: dict) -> dict:
    """The text-only catalogues' titled items that the event sources' catalogue lacks; their bad,
    duplicate and untitled rows go to rejects/ like any other source's."""
    con = cleaning.connect(threads, memory)
    raw, catalogue = _read_catalogue(con, work, "catalog_raw", "catalog_items.parquet")
    con.register("text_catalogue", catalogue)
    con.register("events_catalogue", files.read_table(storage.join(work, "catalogue.parquet")))
    own = con.sql(
        "SELECT item_id, domain, text FROM text_catalogue WHERE text <> '' "
        "AND item_id NOT IN (SELECT item_id FROM events_catalogue) ORDER BY item_id"
    ).to_arrow_table()
    files.write_table(own, storage.join(work, TEXT_CATALOGUE))
    con.register("own", own)
    return {
        "records": {"catalog_items": raw.num_rows},
        "domains": _domain_counts(con, "SELECT domain, count(*) FROM own GROUP BY domain", "catalog_text_items"),
    }


def _text_items(work: str, out: str, with_catalogues: bool) -> pa.Table:
    """Every item text the tokenizer and catalogue replay see: items.parquet and, when the build has
    text-only catalogues, theirs (written by _text_catalogue_task)."""
    items = files.read_table(storage.join(out, ITEMS_FILE))
    if with_catalogues:
        items = pa.concat_tables([items, files.read_table(storage.join(work, TEXT_CATALOGUE)).cast(items.schema)])
    return items


def _clean_task(
    work: str, part: int, config: CleaningConfig, threads: int, memory: str
) -> tuple[dict, pa.Table, pa.Table | None]:
    """The partition cleaned; its stats, its distinct items and its first k-core round's item counts
    (over every cleaned item: the round starts from all of them)."""
    con = cleaning.connect(threads, memory)
    events = _partition_events(work, part)
    titles = files.read_table(storage.join(work, TITLES))
    clean, dropped = cleaning.clean_events(events.select(RAW_EVENTS.names), titles, con)
    files.write_table(clean, storage.join(work, "clean", f"part-{part:05d}.parquet"))
    files.write_table(dropped, storage.join(work, "dropped", f"events-{part:05d}.parquet"))
    con.register("events", events)
    con.register("clean", clean)
    stats = {
        "records": {"events": events.num_rows},
        "cleaning": {"events_after_dedupe": clean.num_rows},
        "domains": _merged(
            [
                _domain_counts(con, "SELECT domain, count(*) FROM events GROUP BY domain", "raw_events"),
                _domain_counts(con, "SELECT domain, count(*) FROM clean GROUP BY domain", "events_after_dedupe"),
            ]
        ),
    }
    counts = None
    if config.k_users or config.k_items:
        counts = cleaning.item_user_counts(clean, None, config.k_users, config.per_domain, con)
    return stats, cleaning.distinct_items(clean, con), counts


def _rejects_task(work: str, out: str, threads: int, memory: str) -> dict:
    """All rejects and skips, sorted, into rejects/; counts by reason, domain and file."""
    con = cleaning.connect(threads, memory)
    unparsed = _partition_events(work, -1)
    dropped = files.read_table(storage.join(work, "dropped"), REJECTS)
    con.register("unparsed", unparsed)
    con.register("dropped", dropped)
    table = con.sql(
        """
        SELECT source_file, line, reason, record, status, domain FROM (
          SELECT source_file, line, reason, record, status, domain FROM unparsed
          UNION ALL SELECT * FROM dropped
        ) ORDER BY source_file, line, reason
        """
    ).to_arrow_table().cast(REJECTS)
    files.write_table(table, storage.join(out, REJECTS_DIR, "part-00000.parquet"))
    con.register("all_dropped", table)
    stats: dict = {"files": {}, "records": {"events": unparsed.num_rows}}
    by_reason = con.sql(
        "SELECT status, reason, coalesce(domain, '(unknown)'), count(*) FROM all_dropped GROUP BY ALL"
    ).fetchall()
    for status, reason, domain, n in by_reason:
        plural = "rejects" if status == "reject" else "skips"
        for scope in (stats.setdefault(plural, {}), stats.setdefault("domains", {}).setdefault(domain, {}).setdefault(plural, {})):
            scope[reason] = scope.get(reason, 0) + n
    for source_file, n in con.sql(
        "SELECT source_file, count(*) FROM all_dropped WHERE status = 'reject' GROUP BY source_file"
    ).fetchall():
        stats["files"].setdefault(source_file, {"records": 0})["rejects"] = n
    return stats


def _union_task(threads: int, memory: str, *distinct: pa.Table) -> tuple[pa.Table, int]:
    con = cleaning.connect(threads, memory)
    con.register("distinct_items", pa.concat_tables([d.cast(_DISTINCT) for d in distinct]))
    items = con.sql("SELECT DISTINCT item_id FROM distinct_items").to_arrow_table()
    return items, items.num_rows


def _count_task(work: str, part: int, items: pa.Table, k_users: int, per_domain: bool, threads: int, memory: str):
    clean = files.read_table(storage.join(work, "clean", f"part-{part:05d}.parquet"))
    return cleaning.item_user_counts(clean, items, k_users, per_domain, cleaning.connect(threads, memory))


def _survivors_task(k_items: int, threads: int, memory: str, *counts: pa.Table) -> tuple[pa.Table, int]:
    items = cleaning.surviving_items(list(counts), k_items, cleaning.connect(threads, memory))
    return items, items.num_rows


def _final_task(
    work: str,
    out: str,
    part: int,
    items: pa.Table | None,
    cleaning_config: CleaningConfig,
    sequence_config: SequenceConfig,
    stop_after: str,
    threads: int,
    memory: str,
    pool: pa.Table | None = None,
) -> tuple[dict, pa.Table]:
    """The partition's k-core survivors as interactions/, and its sequences/ (scrambled from `pool`,
    the final item ids, when sequence_config.scramble)."""
    con = cleaning.connect(threads, memory)
    clean = files.read_table(storage.join(work, "clean", f"part-{part:05d}.parquet"))
    kept = cleaning.kcore_events(clean, items, cleaning_config.k_users, cleaning_config.per_domain, con)
    files.write_table(kept, storage.join(out, INTERACTIONS_DIR, f"part-{part:05d}.parquet"))
    con.register("kept", kept)
    stats: dict = {
        "kept": {
            "events": kept.num_rows,
            "users": con.sql("SELECT count(DISTINCT user_id) FROM kept").fetchall()[0][0],
        },
        "domains": _merged(
            [
                _domain_counts(con, "SELECT domain, count(*) FROM kept GROUP BY domain", "events"),
                _domain_counts(con, "SELECT domain, count(DISTINCT user_id) FROM kept GROUP BY domain", "users"),
            ]
        ),
    }
    if stop_after != "interactions":
        catalogue = files.read_table(storage.join(work, "catalogue.parquet"))
        if pool is not None:
            con.register("catalogue", catalogue)
            con.register("pool_ids", pool)
            pool = con.sql(
                "SELECT item_id, domain FROM catalogue WHERE item_id IN (SELECT item_id FROM pool_ids)"
            ).to_arrow_table()
        seqs = sequences.build_sequences(kept, catalogue.select(["item_id", "text"]), sequence_config, con, pool)
        files.write_table(seqs, storage.join(out, SEQUENCES_DIR, f"part-{part:05d}.parquet"))
        con.register("seqs", seqs)
        counts: dict = {}
        for kind, split, domain, n, n_items in con.sql(
            "SELECT kind, split, domain, count(*), sum(len(item_ids)) FROM seqs GROUP BY ALL"
        ).fetchall():
            counts.setdefault(kind, {}).setdefault(split, 0)
            counts[kind][split] += n
            stats["domains"].setdefault(domain, {}).setdefault("sequences", {})[kind] = n
            stats["domains"][domain].setdefault("sequence_items", {})[kind] = int(n_items)
        stats["sequences"] = counts
    return stats, cleaning.distinct_items(kept, con)


def _items_file_task(work: str, out: str, threads: int, memory: str, *distinct: pa.Table) -> dict:
    """items.parquet: the catalogue rows of the items that kept at least one interaction."""
    con = cleaning.connect(threads, memory)
    con.register("kept_items", pa.concat_tables([d.cast(_DISTINCT) for d in distinct]))
    con.register("catalogue", files.read_table(storage.join(work, "catalogue.parquet")))
    items = con.sql(
        "SELECT item_id, domain, text FROM catalogue WHERE item_id IN (SELECT item_id FROM kept_items) "
        "ORDER BY item_id"
    ).to_arrow_table().cast(ITEMS)
    files.write_table(items, storage.join(out, ITEMS_FILE))
    return dict(con.sql("SELECT domain, count(*) FROM items GROUP BY domain ORDER BY domain").fetchall())


def _tokenizer_task(work: str, out: str, config: TokenConfig, with_catalogues: bool) -> tokens.TokenizerSpec:
    items = _text_items(work, out, with_catalogues)
    if config.tokenizer:
        tokenizer = load_tokenizer(config.tokenizer, require_fast=True)
    else:
        domains = sorted(set(items["domain"].to_pylist()))
        headers = [template.header(k, d) for d in domains for k in ("domain", "catalog")]
        headers.append(template.header("mixed", template.MIXED_DOMAIN))
        texts = headers + [template.continuation(t) for t in items["text"].to_pylist()]
        tokenizer = tokens.train_tokenizer(texts, config.vocab_size)
    tokens.save_tokenizer(tokenizer, storage.join(out, TOKENIZER_DIR))
    return tokens.TokenizerSpec.of(tokenizer)


def _tokens_task(
    work: str,
    out: str,
    part: int,
    partitions: int,
    spec: tokens.TokenizerSpec,
    sequence_config: SequenceConfig,
    token_config: TokenConfig,
    with_catalogues: bool,
    threads: int,
    memory: str,
) -> dict:
    """The partition's documents (its users' sequences and its hash share of the catalogue), packed."""
    con = cleaning.connect(threads, memory)
    # documents are assembled from item ids; their texts (the largest column) are not read: the
    # check and the fallback rebuild them from the item texts, as the catalogue documents are
    seqs = files.read_table(
        storage.join(out, SEQUENCES_DIR, f"part-{part:05d}.parquet"), columns=["kind", "domain", "item_ids", "split"]
    )
    items = _text_items(work, out, with_catalogues)
    item_tokens = files.read_table(storage.join(work, "item_tokens"))
    groups = [seqs]
    if sequence_config.catalog:
        con.register("items", items)
        own = con.sql(
            f"SELECT item_id, domain FROM items WHERE {sequences.partition_expr('item_id', partitions)} = {part}"
        ).to_arrow_table()
        groups.append(sequences.catalog_documents(own, sequence_config, con))
    item_text: dict[str, str] = {}

    def texts_of(docs: pa.Table) -> list[str]:
        if not item_text:
            item_text.update(zip(items["item_id"].to_pylist(), items["text"].to_pylist()))
        return [
            template.document(kind, domain, [item_text[i] for i in ids])
            for kind, domain, ids in zip(*(docs[c].to_pylist() for c in ("kind", "domain", "item_ids")))
        ]

    stats: dict = {"tokens": {}, "tokenization": {"fallback_documents": 0}}
    for table in groups:
        con.register("docs", table)
        keys = con.sql("SELECT DISTINCT kind, domain FROM docs ORDER BY ALL").fetchall()
        header_ids = tokens.header_token_ids(spec, keys)
        for split, kind in con.sql("SELECT DISTINCT split, kind FROM docs ORDER BY ALL").fetchall():
            docs = table.filter(pc.and_(pc.equal(table["split"], split), pc.equal(table["kind"], kind)))
            values, offsets = tokens.assemble_documents(docs, item_tokens, spec, header_ids)
            sample = docs.slice(0, token_config.check_documents)
            if sample.num_rows and not tokens.documents_agree(values, offsets, texts_of(sample), spec):
                # the tokenizer merges across the item separator: tokenize every document whole
                values, offsets = tokens.encode_documents(texts_of(docs), spec)
                stats["tokenization"]["fallback_documents"] += docs.num_rows
            packed = tokens.pack(values, offsets, token_config.block_len, spec.pad_id)
            files.write_table(
                packed,
                storage.join(out, TOKENS_DIR, split, kind, f"part-{part:05d}.parquet"),
                files.TOKEN_ROW_GROUP_ROWS,
            )
            counts = tokens.token_stats(packed)
            counts["documents"] = docs.num_rows
            stats["tokens"].setdefault(split, {})[kind] = counts
    return stats
