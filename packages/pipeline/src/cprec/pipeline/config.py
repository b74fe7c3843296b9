"""The config of `cprec run`: one section per stage, each a layer of that stage's own config.

A preset (presets/<name>.yaml) fills the sections; a --config file and key=value overrides go on
top, e.g. `cprec run --preset default cpt.steps=800 eval.max_users=300`. Keys inside a section are
checked against the stage's config class when the stage starts, with the same one-line errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cprec.core.config import option
from cprec.core.errors import CPRecError

STAGES = ("world", "data", "base", "cpt", "eval", "report")


@dataclass
class VariantConfig:
    """An ablation: another continual pre-training from the same base model, at equal steps."""

    name: str = option("", help="label in the report, e.g. 'CPT domain-only'")
    data: str = option("main", help="training data: main (the pre-training build) or control (the format control build)")
    train: dict[str, Any] = option({}, help="TrainConfig options layered over the `cpt` section")
    sft: bool = option(False, help="also evaluate the variant after fine-tuning on each downstream dataset")


@dataclass
class RunConfig:
    out_dir: str = option("", help="root of all stage outputs; '' = runs/<preset>")
    world: str = option(
        "",
        help="your own world.json (pre-training sources and downstream datasets, any supported format, local or "
        "s3:// / gs://; docs/world.md); '' = generate the embedded default world from the `synth` section",
    )
    until: str = option("report", help=f"last stage to run: {', '.join(STAGES)}")
    seed: int = option(0, help="seed of the world, every training run and the evaluation (a section's own seed wins)")
    synth: dict[str, Any] = option({}, help="SynthConfig options (the generated world); see `cprec data synth --help`")
    data: dict[str, Any] = option({}, help="BuildConfig options of the pre-training corpus; see `cprec data build --help`")
    control: dict[str, Any] = option(
        {}, help="BuildConfig options layered over `data` for the format-control corpus (variants with data=control)"
    )
    train: dict[str, Any] = option({}, help="TrainConfig options shared by every training run (scaling, model shape)")
    base: dict[str, Any] = option(
        {}, help="TrainConfig options of the base model: the tiny model trained on catalogue text alone (every platform's catalogue, no behaviour)"
    )
    cpt: dict[str, Any] = option({}, help="TrainConfig options of CPRec's continual pre-training (WSA) from the base")
    variants: list[VariantConfig] = option([], help="ablation pre-trainings evaluated beside CPRec")
    eval: dict[str, Any] = option({}, help="EvalConfig options (methods are set by the recipe); see `cprec eval --help`")
    sft: dict[str, Any] = option({}, help="TrainConfig options of every downstream fine-tuning (SFT) run")
    sft_datasets: list[str] = option(
        [], help="fine-tune (SFT methods) only on these downstream datasets of the world; [] = all"
    )
    sft_limit: int = option(
        0, help="with sft_datasets=[]: fine-tune only on the world's first N downstream datasets; 0 = all (smoke: 1)"
    )

    def validate(self) -> None:
        if self.until not in STAGES:
            raise CPRecError(f"until must be one of {', '.join(STAGES)}, got {self.until!r}")
        names = [v.name for v in self.variants]
        if any(not n for n in names) or len(set(names)) != len(names):
            raise CPRecError(f"every variant needs a unique name, got {names}")
        if self.sft_limit < 0:
            raise CPRecError(f"sft_limit must be >= 0, got {self.sft_limit}")
        for variant in self.variants:
            if variant.data not in ("main", "control"):
                raise CPRecError(f"variant {variant.name!r}: data must be main or control, got {variant.data!r}")
