"""`cprec run`: the main job. Imports stay cheap; the stages load their libraries when they start."""

from __future__ import annotations

import argparse
from typing import Any

from cprec.core.cli import add_config_command


def register(subparsers: Any) -> None:
    from cprec.pipeline.config import RunConfig
    from cprec.pipeline.presets import load_preset, preset_names

    parser = add_config_command(
        subparsers,
        "run",
        RunConfig,
        _run,
        help="run the whole pipeline (world, data, base model, CPT, ablations, evaluation, report)",
        description=(
            "Runs every stage on a preset and writes <out_dir>/report.md. Stages whose inputs and config "
            "did not change are reused, so re-running after a failure continues where it stopped. "
            f"Presets: {', '.join(preset_names())} (smoke: minutes, for CI; default: the README's main job, "
            "about 15 minutes on 2 CPU cores, on a generated world whose profile sits near real logs' (popularity "
            "skewed, titles less telling, a taste no text shows; docs/world.md); text-world: the default on the world of "
            "the SynthConfig defaults, where titles decide and text models are flattered; medium: the default with "
            "twice the model and pre-training, about an hour on 2 CPU cores; "
            "large: for a GPU machine, about 30 minutes per seed on one H100, projected; cluster: real Amazon Reviews "
            "2023 and Online Retail on object storage with Qwen2.5-0.5B on 8-GPU nodes, world=clusters/world.json, "
            "docs/clusters.md; real-llm: SmolLM2-135M as the base from `cprec model fetch`, about 50 minutes on 2 CPU cores; real-llm-gpu: the same on one GPU; docs/pretrained.md)."
        ),
        example="cprec run --preset smoke until=data out_dir=runs/try",
        base=lambda args: load_preset(args.preset),
    )
    parser.add_argument(
        "--preset", default="default", help="preset name or YAML path; the layer under --config (default: default)"
    )


def _run(config: Any, args: argparse.Namespace) -> None:
    from cprec.core import storage
    from cprec.pipeline.run import run

    preset = args.preset.rsplit("/", 1)[-1].removesuffix(".yaml").removesuffix(".yml")
    root = run(config, preset)
    report = storage.join(root, "report.md")
    print(f"[cprec run] finished: {report if storage.exists(report) else root}")
