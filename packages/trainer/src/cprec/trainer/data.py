"""Ingest of the packed token shards with per-phase mixtures and exact resume.

Why it is built this way: resuming must continue at exactly the batch that comes next, so the
batch at step t on worker r is a pure function of (seed, t, r) and the shard files:

- the shards of each kind are cut into units (row slices of a Parquet row group, `unit_rows` rows);
  each unit belongs to one worker (a seeded deal), so workers read disjoint data;
- each worker streams each kind through its units in an order permuted per epoch (seeded), with the
  rows inside a unit shuffled too: one stream per (kind, worker), read in order by the worker itself;
- each step draws the kind of every one of its blocks from the phase's mixture with a counter-based
  seeded generator, so how many rows of each kind a worker consumed before step t is a sum of draws.

A worker builds its streams when its run starts (or restarts from a checkpoint): each begins at the
unit holding its next row, and the worker drops the few rows before its position, which it knows by
the (unit ordinal, offset) every row carries. Nothing is seen twice or skipped. The streams are
neither Ray Datasets handed to Ray Train's TorchTrainer (it starts reading every dataset it is given
when the worker group starts, so a group of several runs would read all their data at once) nor Ray
Data pipelines run in the worker (see UnitStream).
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow.parquet as pq

from cprec.core import storage
from cprec.core.errors import CPRecError
from cprec.core.schemas import TOKEN_KINDS, TOKENS_DIR
from cprec.trainer.config import PHASES, TrainConfig
from cprec.trainer.schedule import phase_steps

COLUMNS = ("input_ids", "position_ids", "document_ids")
DRAW_BLOCK = 1024  # steps whose kind draws share one generator


@dataclass(frozen=True)
class Unit:
    file: str
    row_group: int
    start: int
    rows: int


def scan_split(data_dir: str, split: str) -> dict[str, list[tuple[str, int, int]]]:
    """kind -> [(file, row group, rows)] of tokens/<split>/<kind>/, from Parquet footers only."""
    found: dict[str, list[tuple[str, int, int]]] = {}
    for kind in TOKEN_KINDS:
        uri = storage.join(data_dir, TOKENS_DIR, split, kind)
        if not storage.exists(uri):
            continue
        groups = []
        for file in storage.list_files(uri, suffixes=(".parquet",)):
            fs, path = storage.filesystem(file)
            with fs.open_input_file(path) as handle:
                meta = pq.ParquetFile(handle).metadata
            groups += [(file, g, meta.row_group(g).num_rows) for g in range(meta.num_row_groups)]
        if sum(rows for _, _, rows in groups):
            found[kind] = groups
    return found


def deal_units(
    groups: list[tuple[str, int, int]], unit_rows: int, world: int, seed: int, what: str
) -> list[list[Unit]]:
    """Cuts row groups into units and deals them to `world` workers after a seeded shuffle."""
    total = sum(rows for _, _, rows in groups)
    if total < world:
        raise CPRecError(f"{what} has {total} token blocks, fewer than the {world} workers")
    size = max(1, min(unit_rows, total // world))
    units = [
        Unit(file, group, start, min(size, rows - start))
        for file, group, rows in groups
        for start in range(0, rows, size)
    ]
    order = np.random.default_rng([seed, 7]).permutation(len(units))
    return [[units[i] for i in order[rank::world]] for rank in range(world)]


@dataclass
class DataPlan:
    """Everything that fixes which rows each worker trains on at each step."""

    data_dir: str
    seed: int
    world: int
    steps: int
    slots: int  # blocks per worker per optimizer step: micro_batch_size * grad_accum
    phase_bounds: tuple[int, int]  # first step of stable, first step of annealing
    kinds: list[str]
    probs: dict[str, list[float]]  # phase -> share of each kind, in `kinds` order
    train_units: dict[str, list[list[Unit]]]  # kind -> rank -> units
    valid_units: list[list[Unit]] = field(default_factory=list)  # rank -> units

    # -- the mixture draws -------------------------------------------------------------------
    def draws(self, rank: int, start: int, stop: int) -> np.ndarray:
        """Kind index of every block of steps [start, stop) on `rank`: an int array [steps, slots]."""
        out = np.empty((max(0, stop - start), self.slots), dtype=np.int64)
        cumulative = {p: np.cumsum(self.probs[p]) for p in PHASES}
        step = start
        while step < stop:
            block = step // DRAW_BLOCK
            end = min(stop, (block + 1) * DRAW_BLOCK)
            uniform = np.random.default_rng([self.seed, rank, block]).random((DRAW_BLOCK, self.slots))
            for i in range(step, end):
                cdf = cumulative[self.phase(i)]
                out[i - start] = np.minimum(
                    np.searchsorted(cdf / cdf[-1], uniform[i - block * DRAW_BLOCK], "right"), len(cdf) - 1
                )
            step = end
        return out

    def phase(self, step: int) -> str:
        stable, annealing = self.phase_bounds
        return PHASES[0] if step < stable else PHASES[1] if step < annealing else PHASES[2]

    def consumed(self, rank: int, step: int) -> dict[str, int]:
        """Rows of each kind that `rank` trained on before `step`."""
        counts = np.bincount(self.draws(rank, 0, step).ravel(), minlength=len(self.kinds))
        return {kind: int(counts[i]) for i, kind in enumerate(self.kinds)}

    # -- the streams ---------------------------------------------------------------------------
    def epoch_order(self, kind: str, rank: int, epoch: int) -> np.ndarray:
        units = self.train_units[kind][rank]
        return np.random.default_rng([self.seed, TOKEN_KINDS.index(kind), rank, epoch]).permutation(
            len(units)
        )

    def position(self, kind: str, rank: int, row: int) -> tuple[int, int]:
        """(unit ordinal, offset in unit) of the `row`-th row of the (kind, rank) stream."""
        units = self.train_units[kind][rank]
        per_epoch = sum(u.rows for u in units)
        epoch, rest = divmod(row, per_epoch)
        for index, unit_index in enumerate(self.epoch_order(kind, rank, epoch)):
            if rest < units[unit_index].rows:
                return epoch * len(units) + index, rest
            rest -= units[unit_index].rows
        raise AssertionError("unreachable: rest < rows per epoch")

    def descriptors(self, kind: str, rank: int, first_ordinal: int, rows_needed: int) -> list[dict]:
        """The units of the (kind, rank) stream from `first_ordinal` on, enough for `rows_needed` rows."""
        units = self.train_units[kind][rank]
        out, ordinal, covered = [], first_ordinal, 0
        while covered < rows_needed:
            epoch, index = divmod(ordinal, len(units))
            unit = units[self.epoch_order(kind, rank, epoch)[index]]
            out.append(_descriptor(unit, ordinal, [self.seed, TOKEN_KINDS.index(kind), rank, epoch, index]))
            covered += unit.rows
            ordinal += 1
        return out


def _descriptor(unit: Unit, ordinal: int, shuffle_seed: list[int] | None) -> dict:
    return {
        "file": unit.file,
        "row_group": unit.row_group,
        "start": unit.start,
        "rows": unit.rows,
        "ordinal": ordinal,
        "shuffle_seed": json.dumps(shuffle_seed),
    }


def make_plan(config: TrainConfig) -> DataPlan:
    """Scans the data build and fixes the mixtures and the units of every worker."""
    storage.require_complete(config.data_dir, "data build")
    world = config.scaling.num_workers
    train = scan_split(config.data_dir, "train")
    if not train:
        raise CPRecError(f"no token shards under {storage.join(config.data_dir, TOKENS_DIR, 'train')}")
    probs: dict[str, list[float]] = {}
    for phase in PHASES:
        shares = config.schedule.mixture.for_phase(phase)
        missing = sorted(k for k, v in shares.items() if v > 0 and k not in train)
        if missing:
            raise CPRecError(
                f"schedule.mixture.{phase} draws kind {missing[0]!r} but {config.data_dir} has no "
                f"tokens/train/{missing[0]}/ (it has: {', '.join(sorted(train))})"
            )
        if not shares:  # in proportion to what the build holds
            shares = {kind: sum(rows for _, _, rows in groups) for kind, groups in train.items()}
        total = sum(shares.values())
        probs[phase] = [shares.get(kind, 0.0) / total for kind in sorted(train, key=TOKEN_KINDS.index)]
    kinds = sorted(train, key=TOKEN_KINDS.index)
    warmup, stable, _ = phase_steps(config.steps, config.schedule)
    valid = scan_split(config.data_dir, "valid")
    valid_groups = [g for kind in sorted(valid, key=TOKEN_KINDS.index) for g in valid[kind]]
    valid_units: list[list[Unit]] = []
    if sum(rows for _, _, rows in valid_groups) >= world:
        valid_units = deal_units(valid_groups, config.unit_rows, world, config.seed, "tokens/valid")
    return DataPlan(
        data_dir=config.data_dir,
        seed=config.seed,
        world=world,
        steps=config.steps,
        slots=config.micro_batch_size * config.grad_accum,
        phase_bounds=(warmup, warmup + stable),
        kinds=kinds,
        probs=probs,
        train_units={
            kind: deal_units(train[kind], config.unit_rows, world, config.seed, f"tokens/train/{kind}")
            for kind in kinds
        },
        valid_units=valid_units,
    )


def read_units(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Unit descriptors (columns of `_descriptor`) -> their token rows (shuffled inside the unit when seeded)."""
    parts: dict[str, list[np.ndarray]] = {name: [] for name in (*COLUMNS, "ordinal", "offset")}
    for i in range(len(batch["file"])):
        fs, path = storage.filesystem(str(batch["file"][i]))
        start, rows = int(batch["start"][i]), int(batch["rows"][i])
        with fs.open_input_file(path) as handle:
            table = pq.ParquetFile(handle).read_row_group(int(batch["row_group"][i]), columns=list(COLUMNS))
        table = table.slice(start, rows)
        seed = json.loads(str(batch["shuffle_seed"][i]))
        order = np.random.default_rng(seed).permutation(rows) if seed is not None else np.arange(rows)
        for name in COLUMNS:
            column = table.column(name).combine_chunks()
            parts[name].append(column.values.to_numpy().reshape(rows, -1)[order].astype(np.int32))
        parts["ordinal"].append(np.full(rows, int(batch["ordinal"][i]), dtype=np.int64))
        parts["offset"].append(np.arange(rows, dtype=np.int64))
    return {name: np.concatenate(values) for name, values in parts.items()}


class UnitStream:
    """A worker's units read in order by a background thread, `ahead` units before they are needed.

    The worker reads its own units directly (local disk or object storage through pyarrow): a Ray
    Data pipeline per stream ran its streaming executor's scheduling loop inside the training worker,
    and on 2 CPU cores that loop took ~40% of the worker's time (docs/benchmarks.md).
    """

    def __init__(self, descriptors: list[dict], ahead: int = 2):
        self.descriptors = descriptors
        self.ahead = ahead

    def units(self) -> Iterator[dict[str, np.ndarray]]:
        """The rows of each unit (COLUMNS, ordinal, offset), in order."""
        from concurrent.futures import ThreadPoolExecutor

        def read(descriptor: dict) -> dict[str, np.ndarray]:
            return read_units({key: np.asarray([value]) for key, value in descriptor.items()})

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cprec-units") as pool:
            pending = [pool.submit(read, d) for d in self.descriptors[: self.ahead]]
            for index in range(len(self.descriptors)):
                rows = pending.pop(0).result()
                if index + self.ahead < len(self.descriptors):
                    pending.append(pool.submit(read, self.descriptors[index + self.ahead]))
                yield rows

    def iter_torch_batches(self, batch_size: int | None = None) -> Iterator[dict]:
        """Dicts of torch tensors: one per unit, or `batch_size` rows each across units (the last
        may be smaller)."""
        import torch

        if batch_size is None:
            for rows in self.units():
                yield {name: torch.from_numpy(values) for name, values in rows.items()}
            return
        held: list[dict[str, np.ndarray]] = []
        count = 0
        for rows in self.units():
            held.append(rows)
            count += len(rows["offset"])
            while count >= batch_size:
                merged = {name: np.concatenate([part[name] for part in held]) for name in held[0]}
                yield {name: torch.from_numpy(values[:batch_size]) for name, values in merged.items()}
                held = [{name: values[batch_size:] for name, values in merged.items()}]
                count -= batch_size
        if count:
            merged = {name: np.concatenate([part[name] for part in held]) for name in held[0]}
            yield {name: torch.from_numpy(values) for name, values in merged.items()}


def train_stream(plan: DataPlan, kind: str, rank: int, start_step: int) -> UnitStream:
    """`rank`'s rows of `kind` from the unit holding its row at `start_step` on, enough for the rest
    of the run. Built by the worker when its run starts, so a worker group that trains several runs
    reads only the running one's data."""
    consumed = plan.consumed(rank, start_step)[kind]
    first, offset = plan.position(kind, rank, consumed)
    needed = offset + (plan.steps - start_step) * plan.slots
    return UnitStream(plan.descriptors(kind, rank, first, needed))


def valid_stream(plan: DataPlan, rank: int) -> UnitStream:
    """`rank`'s validation rows, in a fixed order."""
    return UnitStream([_descriptor(u, i, None) for i, u in enumerate(plan.valid_units[rank])])


class KindStream:
    """One worker's rows of one kind, from its exact position on, as torch tensors."""

    def __init__(self, stream: UnitStream, position: tuple[int, int]):
        self.batches = iter(stream.iter_torch_batches())
        self.position = position
        self.buffer: deque[dict] = deque()
        self.started = False

    def _fill(self) -> None:
        batch = next(self.batches)
        ordinals, offsets = batch["ordinal"].tolist(), batch["offset"].tolist()
        for i, at in enumerate(zip(ordinals, offsets)):
            if not self.started:
                if at > self.position:
                    raise CPRecError(
                        f"data stream starts at unit {at} past the resume position {self.position}"
                    )
                if at < self.position:
                    continue
                self.started = True
            self.buffer.append({name: batch[name][i] for name in COLUMNS})

    def take(self) -> dict:
        while not self.buffer:
            try:
                self._fill()
            except StopIteration:
                raise CPRecError("token stream ended before the last step (plan/dataset mismatch)") from None
        return self.buffer.popleft()


class Batches:
    """The micro-batches of one worker, step after step, drawn from its kind streams."""

    def __init__(self, plan: DataPlan, rank: int, start_step: int, streams: dict, micro_batch_size: int):
        self.plan, self.rank, self.micro = plan, rank, micro_batch_size
        consumed = plan.consumed(rank, start_step)
        self.streams = {
            kind: KindStream(streams[kind], plan.position(kind, rank, consumed[kind]))
            for kind in plan.kinds
        }

    def step(self, step: int) -> Iterator[tuple[dict, dict[str, int]]]:
        """Yields (micro-batch of stacked tensors, blocks per kind) for each micro-batch of `step`."""
        import torch

        kinds = self.plan.draws(self.rank, step, step + 1)[0]
        for start in range(0, len(kinds), self.micro):
            rows = [self.streams[self.plan.kinds[k]].take() for k in kinds[start : start + self.micro]]
            counts: dict[str, int] = {}
            for k in kinds[start : start + self.micro]:
                counts[self.plan.kinds[k]] = counts.get(self.plan.kinds[k], 0) + 1
            yield {name: torch.stack([row[name] for row in rows]) for name in COLUMNS}, counts
