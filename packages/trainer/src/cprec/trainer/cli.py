"""`cprec train fit` and `cprec train plot-schedule` (cheap imports: torch and Ray load in handlers)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from cprec.core.cli import add_config_command
from cprec.core.config import option
from cprec.trainer.config import TrainConfig


@dataclass
class PlotScheduleConfig(TrainConfig):
    """A train config (so the same YAML serves both) plus where the PNG goes; only the schedule matters."""

    out: str = option("schedule.png", help="PNG file to write")

    def validate(self) -> None:
        self.schedule.validate()


def register(subparsers: Any) -> None:
    train = subparsers.add_parser(
        "train",
        help="continual pre-training on Ray Train + DeepSpeed with the WSA schedule",
        description="Continual pre-training of a causal LM on the packed token shards of `cprec data build`.",
    )
    commands = train.add_subparsers(dest="train_command", metavar="COMMAND", required=True)
    add_config_command(
        commands,
        "fit",
        TrainConfig,
        _fit,
        help="train (or resume, or find finished) a run and export the model in HF format",
        example="cprec train fit data_dir=out/data output_dir=out/cpt steps=600",
    )
    add_config_command(
        commands,
        "plot-schedule",
        PlotScheduleConfig,
        _plot_schedule,
        help="write a PNG of the learning rate and the data mixture against steps",
        example="cprec train plot-schedule steps=600 out=schedule.png",
    )


def _fit(config: TrainConfig, _args: argparse.Namespace) -> int:
    from cprec.trainer.fit import fit

    result = fit(config)
    metrics = result.metrics
    line = (
        f"cprec train: done, {metrics.get('step')} steps, loss {metrics.get('first_loss', float('nan')):.4f}"
    )
    line += f" -> {metrics.get('loss', float('nan')):.4f}"
    if metrics.get("val_loss") is not None:
        line += f", val_loss {metrics['first_val_loss']:.4f} -> {metrics['val_loss']:.4f}"
    print(line)
    print(f"cprec train: model at {result.model_dir}, metrics in {result.metrics_file}")
    return 0


def _plot_schedule(config: PlotScheduleConfig, _args: argparse.Namespace) -> int:
    from cprec.trainer.plots import plot_schedule

    print(f"cprec train: wrote {plot_schedule(config.schedule, config.steps, config.out)}")
    return 0
