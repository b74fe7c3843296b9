"""`cprec tune`: Ray Tune over the WSA phase proportions. Imports stay cheap; Ray loads in the handler."""

from __future__ import annotations

import argparse
from typing import Any

from cprec.core.cli import add_config_command


def register(subparsers: Any) -> None:
    from cprec.pipeline.presets import load_preset, preset_names
    from cprec.pipeline.tune import TuneConfig, preset_sections

    parser = add_config_command(
        subparsers,
        "tune",
        TuneConfig,
        _tune,
        help="Ray Tune over the WSA phase proportions (objective: downstream validation NDCG@10)",
        description=(
            "Builds or reuses the world, corpus and base model of `cprec run` on the same preset and out_dir, "
            "then sweeps (warmup, stable, annealing) over the simplex, optionally crossed with annealing "
            "shapes and peak learning rates. Each trial continually pre-trains from the base model (ASHA "
            "stops bad ones early on validation loss) and scores the zero-shot LLM on the downstream "
            "validation splits. Writes <out_dir>/<name>/: Tune's experiment dir (resumed when re-run), "
            "trials.csv, trials.md, simplex.png and best_train.yaml. "
            f"Presets: {', '.join(preset_names())}."
        ),
        example="cprec tune --preset smoke points='[[0.1,0.6,0.3],[0.2,0.2,0.6]]' out_dir=runs/try",
        base=lambda args: preset_sections(load_preset(args.preset)),
    )
    parser.add_argument(
        "--preset", default="default", help="`cprec run` preset name or YAML path; the layer under --config"
    )


def _tune(config: Any, args: argparse.Namespace) -> None:
    from cprec.pipeline.tune import tune

    preset = args.preset.rsplit("/", 1)[-1].removesuffix(".yaml").removesuffix(".yml")
    result = tune(config, preset)
    print(f"[cprec tune] finished: {result.experiment_dir}/trials.md")
