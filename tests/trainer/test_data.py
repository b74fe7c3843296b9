"""The data plan: workers read disjoint rows, the draws and stream positions are pure functions."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from cprec.core.errors import CPRecError
from cprec.trainer.config import TrainConfig
from cprec.trainer.data import make_plan, read_units


def config(build, **kwargs) -> TrainConfig:
    out = TrainConfig(data_dir=str(build), output_dir="unused", steps=40, unit_rows=4, **kwargs)
    out.scaling.num_workers = 2
    out.schedule.mixture.warmup = out.schedule.mixture.stable = {
        "domain": 0.45,
        "mixed": 0.45,
        "catalog": 0.1,
    }
    out.schedule.mixture.annealing = {"mixed": 0.9, "catalog": 0.1}
    return out


def rows_of(batch) -> list[tuple]:
    return [tuple(row) for row in batch["input_ids"].tolist()]


def read(descriptors) -> dict:
    columns = {key: np.array([d[key] for d in descriptors]) for key in descriptors[0]}
    return read_units(columns)


def unit_descriptor(unit) -> dict:
    return {
        "file": unit.file,
        "row_group": unit.row_group,
        "start": unit.start,
        "rows": unit.rows,
        "ordinal": 0,
        "shuffle_seed": "null",
    }


def test_workers_get_disjoint_units_covering_every_row(token_build):
    plan = make_plan(config(token_build))
    assert plan.kinds == ["domain", "mixed", "catalog"]
    for kind, per_rank in plan.train_units.items():
        files = sorted((token_build / "tokens" / "train" / kind).glob("*.parquet"))
        everything = sorted(
            r for f in files for r in map(tuple, pq.read_table(f).column("input_ids").to_pylist())
        )
        seen = [set(rows_of(read([unit_descriptor(u) for u in per_rank[rank]]))) for rank in range(2)]
        assert not seen[0] & seen[1]
        assert sorted(seen[0] | seen[1]) == sorted(set(everything))


def test_draws_are_pure_and_follow_the_phase_mixture(token_build):
    plan = make_plan(config(token_build, micro_batch_size=3, grad_accum=2))
    whole = plan.draws(0, 0, 40)
    assert whole.shape == (40, 6)
    np.testing.assert_array_equal(whole, np.concatenate([plan.draws(0, 0, 17), plan.draws(0, 17, 40)]))
    assert not np.array_equal(whole, plan.draws(1, 0, 40))
    annealing_start = plan.phase_bounds[1]
    assert plan.kinds.index("domain") not in whole[annealing_start:]  # annealing draws mixed + catalog only
    assert plan.kinds.index("domain") in whole[:annealing_start]
    assert plan.consumed(0, 40) == {k: int((whole == i).sum()) for i, k in enumerate(plan.kinds)}


def test_stream_positions_match_the_rows_read(token_build):
    plan = make_plan(config(token_build))
    rank, kind = 1, "mixed"
    per_epoch = sum(u.rows for u in plan.train_units[kind][rank])
    stream = read(plan.descriptors(kind, rank, 0, 2 * per_epoch))
    rows = rows_of(stream)
    assert sorted(rows[:per_epoch]) == sorted(rows[per_epoch : 2 * per_epoch])  # each row once per epoch
    assert rows[:per_epoch] != rows[per_epoch : 2 * per_epoch]  # in a new order
    for consumed in (0, 3, per_epoch - 1, per_epoch, per_epoch + 5):
        ordinal, offset = plan.position(kind, rank, consumed)
        assert (stream["ordinal"][consumed], stream["offset"][consumed]) == (ordinal, offset)
        # a stream started at that unit begins with the same rows
        resumed = read(plan.descriptors(kind, rank, ordinal, 8))
        assert rows_of(resumed)[offset : offset + 4] == rows[consumed : consumed + 4]


def test_a_mixture_naming_a_missing_kind_is_a_clear_error(tmp_path, make_build):
    build = make_build(tmp_path / "sft", {("train", "domain"): 30})
    with pytest.raises(CPRecError, match="draws kind 'catalog'.*has no tokens/train/catalog"):
        make_plan(config(build))
    cfg = config(build)
    cfg.schedule.mixture.warmup = cfg.schedule.mixture.stable = cfg.schedule.mixture.annealing = {}
    plan = make_plan(cfg)  # {} = in proportion to the kinds present
    assert plan.kinds == ["domain"] and plan.valid_units == []
