"""The configs of `cprec run` and `cprec tune`: one section per stage, each a layer of that stage's own
config, declared once (`StageSections`) for both, so their stage digests cannot drift apart.

A preset (presets/<name>.yaml) fills the sections; a --config file and key=value overrides go on
top, e.g. `cprec run --preset default cpt.steps=800 eval.max_users=300`. Keys inside a section are
checked against the stage's config class before any stage runs (recipe.check_plan).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cprec.core.config import option
from cprec.core.errors import CPRecError

STAGES = ("world", "data", "downstream", "profile", "base", "cpt", "sft", "eval", "report")


@dataclass
class StageSections:
    """The stages `cprec run` and `cprec tune` share: world, corpus, base model, CPT, evaluation."""

    out_dir: str = option("", help="root of all stage outputs; '' = runs/<preset>")
    world: str = option(
        "",
        help="your own world.json (pre-training sources and downstream datasets, any supported format, local or "
        "s3:// / gs://; docs/world.md); '' = generate the embedded default world from the `synth` section",
    )
    seed: int = option(0, help="seed of the world, every training run and the evaluation (a section's own seed wins)")
    synth: dict[str, Any] = option({}, help="SynthConfig options (the generated world); see `cprec data synth --help`")
    data: dict[str, Any] = option(
        {}, help="BuildConfig options of the pre-training corpus; see `cprec data build --help`"
    )
    train: dict[str, Any] = option({}, help="TrainConfig options shared by every training run (scaling, model shape)")
    base_model: str = option(
        "",
        help="a pretrained causal LM (a Hugging Face model directory, local or s3:// / gs://; e.g. from `cprec "
        "model fetch`) used as the base as is: no catalogue pre-training, the corpus tokenized with its "
        "tokenizer (unless data.tokens.tokenizer says otherwise), CPT, ablations and fine-tunings start from it",
    )
    base: dict[str, Any] = option(
        {},
        help="TrainConfig options of the base model: the tiny model trained on catalogue text alone (every "
        "platform's catalogue, no behaviour), or a given `model` continued on it; unused with base_model",
    )
    cpt: dict[str, Any] = option({}, help="TrainConfig options of CPRec's continual pre-training (WSA) from the base")
    eval: dict[str, Any] = option(
        {}, help="EvalConfig options (datasets and methods are set by the recipe); see `cprec eval --help`"
    )

    def validate(self) -> None:
        self.downstream_build()

    def downstream_build(self) -> dict[str, Any]:
        """The BuildConfig options of the downstream datasets' cleaning: `eval.build`, with the corpus's
        `data.item_ratings`, set once for both: a model pre-trained on item texts with their ratings
        must be asked about items in that same template. A differing `eval.build.item_ratings` is an error."""
        build = dict(self.eval.get("build") or {})
        ratings = same_item_ratings(self.data, build, "eval.build")
        if ratings:
            build["item_ratings"] = ratings
        return build


def same_item_ratings(data: dict, options: dict, where: str) -> bool:
    """The corpus's `data.item_ratings`, after checking that `options` (another build's BuildConfig
    options, at `where`) do not set it otherwise: every model is pre-trained and asked about items
    in the same template."""
    ratings = data.get("item_ratings", False)
    if options.get("item_ratings", ratings) != ratings:
        raise CPRecError(
            f"{where}.item_ratings={options['item_ratings']} differs from data.item_ratings={ratings}: "
            "pre-training and recommendation must write item texts alike; set data.item_ratings alone"
        )
    return ratings


@dataclass
class VariantConfig:
    """An ablation: another continual pre-training from the same base model, at equal steps."""

    name: str = option("", help="label in the report, e.g. 'CPT domain-only'")
    data: str = option(
        "main", help="training data: main (the pre-training build) or control (the format control build)"
    )
    train: dict[str, Any] = option({}, help="TrainConfig options layered over the `cpt` section")
    sft: bool = option(False, help="also evaluate the variant after fine-tuning on each downstream dataset")


@dataclass
class SFTOptions:
    """Supervised fine-tuning on each downstream dataset's training histories, one run per model and dataset."""

    datasets: list[str] = option([], help="fine-tune only on these downstream datasets of the world; [] = all")
    limit: int = option(0, help="with datasets=[]: fine-tune only on the world's first N downstream datasets; 0 = all")
    epochs: float = option(
        0.0,
        help="passes over a dataset's training blocks; > 0 sets each run's steps to ceil(epochs x blocks / blocks "
        "per step), so a larger dataset is fine-tuned longer; 0 keeps train.steps",
    )
    block_len: int = option(256, help="token block length of the fine-tuning data")
    max_items: int = option(50, help="history window per training document (the template's windows)")
    valid_fraction: float = option(0.05, help="users whose (history + validation item) form the validation split")
    train: dict[str, Any] = option({}, help="TrainConfig options layered over `train` for every fine-tuning run")

    def validate(self) -> None:
        if self.limit < 0 or self.epochs < 0:
            raise CPRecError(f"sft.limit and sft.epochs must be >= 0, got {self.limit} and {self.epochs}")
        if self.block_len < 2 or self.max_items < 2:
            raise CPRecError("sft.block_len and sft.max_items must be >= 2")
        if not 0 <= self.valid_fraction < 1:
            raise CPRecError(f"sft.valid_fraction must be in [0, 1), got {self.valid_fraction}")


@dataclass
class RunConfig(StageSections):
    until: str = option("report", help=f"last stage to run: {', '.join(STAGES)}")
    control: dict[str, Any] = option(
        {}, help="BuildConfig options layered over `data` for the format-control corpus (variants with data=control)"
    )
    variants: list[VariantConfig] = option([], help="ablation pre-trainings evaluated beside CPRec")
    sft: SFTOptions = option(SFTOptions(), help="the fine-tuning stage (SFT methods)")

    def validate(self) -> None:
        super().validate()
        same_item_ratings(self.data, self.control, "control")
        if self.until not in STAGES:
            raise CPRecError(f"until must be one of {', '.join(STAGES)}, got {self.until!r}")
        names = [v.name for v in self.variants]
        if any(not n for n in names) or len(set(names)) != len(names):
            raise CPRecError(f"every variant needs a unique name, got {names}")
        for variant in self.variants:
            if variant.data not in ("main", "control"):
                raise CPRecError(f"variant {variant.name!r}: data must be main or control, got {variant.data!r}")
        self.sft.validate()
