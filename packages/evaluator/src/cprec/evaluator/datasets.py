"""The evaluation's downstream datasets (docs/design.md §7): which they are, and their splits in memory.

The split itself is data_prep's (`cprec.data_prep.downstream`): a dataset with `split_dir` is read as
it is there; any other is prepared afresh into `<out_dir>/datasets/<name>/` from its raw source or
data_prep output dir. Reusing splits across runs is the pipeline's job (content-addressed stages).
"""

from __future__ import annotations

import dataclasses

from cprec.core import storage
from cprec.core.errors import CPRecError
from cprec.core.sources import SourceConfig
from cprec.core.world import load_world, world_source
from cprec.data_prep.downstream import SplitDataset, SplitSpec, load_split, prepare_split
from cprec.evaluator.config import DatasetConfig, EvalConfig


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
    fields = {f.name for f in dataclasses.fields(SourceConfig)}
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not entry.get("name"):
            raise CPRecError(f"world file {config.world}: downstream[{i}] needs a `name` and a `source`")
        source = world_source(config.world, entry.get("source"), f"downstream[{i}].source")
        spec = SourceConfig(**{k: v for k, v in source.items() if k in fields})
        specs.append(DatasetConfig(name=entry["name"], platform=entry.get("platform", ""), source=spec))
    if not specs:
        raise CPRecError(f"world file {config.world} lists no downstream datasets")
    return specs


def prepare_datasets(config: EvalConfig) -> list[SplitDataset]:
    """Every dataset's split, in memory; the methods' models are checked against the dataset names
    first, since a world's names are known only here."""
    specs = dataset_specs(config)
    config.check_method_models([spec.name for spec in specs])
    return [prepare_dataset(spec, config) for spec in specs]


def prepare_dataset(spec: DatasetConfig, config: EvalConfig) -> SplitDataset:
    if spec.split_dir:
        dataset = load_split(spec.split_dir)
        if dataset.name != spec.name:
            # results, per-user files and per-dataset models are keyed by the name
            raise CPRecError(f"split_dir {spec.split_dir} holds dataset {dataset.name!r}, not {spec.name!r}")
        return dataset
    split = SplitSpec(
        name=spec.name, platform=spec.platform, source=dataclasses.asdict(spec.source), data_dir=spec.data_dir
    )
    return load_split(prepare_split(split, config.build, storage.join(config.out_dir, "datasets", spec.name)))
