"""`cprec data synth` and `cprec data build`. Imports stay cheap: Ray and DuckDB load in the handlers."""

from __future__ import annotations

import argparse
from typing import Any

from cprec.core.cli import add_config_command


def register(subparsers: Any) -> None:
    from cprec.data_prep.build import BuildConfig
    from cprec.data_prep.synth import SynthConfig

    parser = subparsers.add_parser("data", help="generate a world, or build training data from source files")
    stages = parser.add_subparsers(dest="data_command", metavar="COMMAND", required=True)
    add_config_command(
        stages,
        "synth",
        SynthConfig,
        _synth,
        help="write the embedded default world (source files in the real formats + world.json)",
        example="cprec data synth out_dir=data/world",
    )
    add_config_command(
        stages,
        "build",
        BuildConfig,
        _build,
        help="clean, sequence, tokenize and pack source files into a training data directory",
        description="Builds items.parquet, interactions/, sequences/, tokens/, tokenizer/, stats.json and "
        "rejects/ (see docs/data_prep.md) from a world.json or a list of sources.",
        example="cprec data build world=data/world/world.json out_dir=data/pretrain",
    )


def _synth(config: Any, _args: argparse.Namespace) -> None:
    from cprec.data_prep.synth import synthesize

    print(synthesize(config))


def _build(config: Any, _args: argparse.Namespace) -> None:
    from cprec.core import storage
    from cprec.core.schemas import STATS_FILE
    from cprec.data_prep.build import build

    out = build(config)
    stats = storage.read_json(storage.join(out, STATS_FILE))
    kept, records = stats["kept"], stats["records"]
    print(
        f"{out}: kept {kept['events']} events of {kept['users']} users on {kept['items']} items "
        f"from {records['total']} records ({records['rejected']} rejected)"
    )
