"""The stages of CPRec's recipe, shared by `cprec run` and `cprec tune`: each is content-addressed
(stages.py), so a tune on a run's out_dir reuses its world, corpus, base model and downstream splits.

world -> data (the pre-training corpus) -> base (a tiny model on catalogue text alone: the stand-in for
a general LLM's open-world knowledge; or a given model continued on it) -> cpt (CPRec's continual
pre-training with WSA) and the ablation pre-trainings -> downstream (each dataset's leave-one-out
split) -> sft-data and sft (fine-tuning every model on each dataset) -> eval (the evaluator scores the
given models on the given splits) -> report.

Training runs that can run together share one Ray Train worker group (trainer.fit_group): the CPT
and the ablations, then every fine-tuning.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cprec.core import storage
from cprec.core.config import layered, load_config
from cprec.core.errors import CPRecError
from cprec.pipeline.config import RunConfig, SFTOptions, StageSections
from cprec.pipeline.stages import PLACEHOLDER, StageRunner

if TYPE_CHECKING:
    from cprec.evaluator.config import DatasetConfig, EvalConfig
    from cprec.trainer.config import TrainConfig

BASE_NAME = "Base"
CPREC_NAME = "CPRec"
PHASES = ("warmup", "stable", "annealing")
# A fine-tuning corpus holds the dataset's own histories only (tokens/train/domain).
ONLY_DOMAIN = {"domain": 1.0, "mixed": 0.0, "catalog": 0.0}


def slug(name: str) -> str:
    """A label as a stage-name component: 'CPT domain-only' -> 'cpt-domain-only'."""
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")


def seeded(sections: StageSections, section: dict) -> dict:
    return layered({"seed": sections.seed}, section)


# -- world and corpus -------------------------------------------------------------------------------


def world_stage(root: str, world: str, synth: dict) -> tuple[StageRunner, str]:
    """The stage runner of `root` and the world.json its stages read: the user's own `world` (its
    files' sizes and times join every stage's digest, so an edited log is never answered from an old
    stage) or, when `world` is '', the generated one, a stage itself (`synth`: its SynthConfig options)."""
    from cprec.data_prep.synth import SynthConfig, synthesize

    if world:
        world_json = storage.absolute(world)
        return StageRunner(root, inputs=world_fingerprint(world_json)), world_json
    runner = StageRunner(root)
    generated = runner.run(
        "world", lambda out: load_config(SynthConfig, base=layered(synth, {"out_dir": out})), synthesize
    )
    return runner, storage.join(generated.path, "world.json")


def world_fingerprint(world_json: str) -> str:
    """A digest of the world file's bytes and of every source file's path, size and modification time."""
    from cprec.core.world import load_world, world_source

    world = load_world(world_json)
    entries = [("pretrain", i, e) for i, e in enumerate(world.get("pretrain") or [])]
    entries += [("downstream", i, (e or {}).get("source")) for i, e in enumerate(world.get("downstream") or [])]
    paths = [world_source(world_json, entry, f"{section}[{i}]").get("path", "") for section, i, entry in entries]
    return storage.content_digest([world_json, *(p for p in paths if p)])


def corpus_stage(runner: StageRunner, name: str, section: dict, world_json: str) -> str:
    """A pre-training corpus (`data`, or `control` for the format control); returns its directory."""
    from cprec.data_prep.build import BuildConfig, build

    def configure(out: str) -> BuildConfig:
        return load_config(BuildConfig, base=layered(section, {"world": world_json, "out_dir": out}))

    return runner.run(name, configure, build).path


# -- training ---------------------------------------------------------------------------------------


def train_config(section: dict, data_dir: str, model: str, out: str, name: str) -> TrainConfig:
    from cprec.trainer.config import TrainConfig

    fixed = {"data_dir": data_dir, "output_dir": out, "checkpoint": {"name": name}}
    if model:
        fixed["model"] = model
    return load_config(TrainConfig, base=layered(section, fixed))


def train_stages(runner: StageRunner, runs: list[tuple[str, dict, str, str]]) -> list[str]:
    """Training runs as stages, trained together in one worker group; `runs`: (stage name, TrainConfig
    section, data_dir, model ('' = the section's)). Returns each run's exported model directory."""
    from cprec.trainer.fit import MODEL_DIR, fit_group

    def configure(name: str, section: dict, data_dir: str, model: str):
        return lambda out: train_config(section, data_dir, model, out, name)

    stages = [(name, configure(name, section, data_dir, model)) for name, section, data_dir, model in runs]
    results = runner.run_group(stages, fit_group)
    return [storage.join(result.path, MODEL_DIR) for result in results]


def base_stage(runner: StageRunner, sections: StageSections, data_dir: str) -> str:
    """The base model's directory: `base_model` as is, or the base trained on the catalogue."""
    if sections.base_model:
        return storage.absolute_if_present(sections.base_model)
    return train_stages(runner, [("base", base_section(sections), data_dir, "")])[0]


def track_base_model(runner: StageRunner, sections: StageSections) -> None:
    """A pretrained `base_model`'s files (their sizes and times) join the digest of every later stage,
    so a model re-fetched or replaced at the same path is never answered from the old one's stages."""
    if sections.base_model:
        model = storage.content_digest([storage.absolute_if_present(sections.base_model)])
        runner.inputs = "+".join(part for part in (runner.inputs, model) if part)


def corpus_section(sections: StageSections, section: dict) -> dict:
    """A corpus's BuildConfig options: with a pretrained `base_model`, its own tokenizer tokenizes the
    text (the model knows no other ids) unless the section names one."""
    if sections.base_model and not (section.get("tokens") or {}).get("tokenizer"):
        return layered(section, {"tokens": {"tokenizer": storage.absolute_if_present(sections.base_model)}})
    return section


def base_section(sections: StageSections) -> dict:
    return layered(seeded(sections, sections.train), sections.base)


def cpt_section(sections: StageSections) -> dict:
    return layered(seeded(sections, sections.train), sections.cpt)


# -- downstream datasets ----------------------------------------------------------------------------


@dataclass
class DownstreamStage:
    """The `downstream` stage's config: every downstream dataset of the world, split."""

    out_dir: str
    world: str
    datasets: list[str]
    build: dict = field(default_factory=dict)  # BuildConfig options of the cleaning (eval.build)


@dataclass
class SFTDataStage:
    """An `sft-data-<dataset>` stage's config (data_prep.downstream.write_sft_data's arguments)."""

    split_dir: str
    tokenizer_uri: str
    out_dir: str
    block_len: int
    max_items: int
    valid_fraction: float
    seed: int


def downstream_specs(world_json: str) -> list[DatasetConfig]:
    """The world's downstream datasets, in its order."""
    from cprec.evaluator.config import EvalConfig
    from cprec.evaluator.datasets import dataset_specs

    return dataset_specs(EvalConfig(world=world_json))


def downstream_stage(runner: StageRunner, sections: StageSections, world_json: str) -> list[dict]:
    """Each downstream dataset cleaned (data_prep's build) and split leave-one-out by time, once for
    every method, fine-tuning and tune trial; returns the evaluator's dataset entries (name, platform,
    split_dir)."""
    from cprec.data_prep.downstream import SplitSpec, prepare_split

    specs = downstream_specs(world_json)
    build_options = sections.downstream_build()  # eval.build, with data.item_ratings
    splits = {
        spec.name: SplitSpec(spec.name, spec.platform, dataclasses.asdict(spec.source), spec.data_dir) for spec in specs
    }

    def produce(stage: DownstreamStage) -> None:
        for name, split in splits.items():
            prepare_split(split, stage.build, storage.join(stage.out_dir, name))

    path = runner.run(
        "downstream", lambda out: DownstreamStage(out, world_json, list(splits), build_options), produce
    ).path
    return [{"name": s.name, "platform": s.platform, "split_dir": storage.join(path, s.name)} for s in specs]


def profile_stage(runner: StageRunner, sections: StageSections, data_dir: str, datasets: list[dict]) -> str:
    """The world's profile (profile.py) over the corpus and the downstream splits; returns its directory."""
    from cprec.pipeline import profile

    def configure(out: str) -> profile.ProfileStage:
        return profile.ProfileStage(out, data_dir, datasets, seeded(sections, sections.eval))

    return runner.run("profile", configure, profile.produce).path


# -- fine-tuning ------------------------------------------------------------------------------------


def sft_targets(sft: SFTOptions, downstream: list[str]) -> list[str]:
    """The downstream datasets every SFT method fine-tunes on, in the world's order."""
    if sft.datasets:
        return [name for name in downstream if name in sft.datasets]
    return downstream[: sft.limit] if sft.limit else list(downstream)


def sft_section(config: RunConfig) -> dict:
    """Every fine-tuning's TrainConfig section: the shared `train`, domain-only data, then `sft.train`."""
    only_domain = {"schedule": {"mixture": dict.fromkeys(PHASES, ONLY_DOMAIN)}}
    return layered(seeded(config, config.train), only_domain, config.sft.train)


def sft_stages(
    runner: StageRunner, config: RunConfig, models: dict[str, str], datasets: list[dict], corpus_dir: str
) -> dict[str, dict[str, str]]:
    """Fine-tunes each of `models` (label -> model dir) on each dataset entry (name, split_dir): the
    SFT data once per dataset (tokenized with the tokenizer of the corpus at `corpus_dir`, which every
    model shares), then every fine-tuning in one worker group. Returns label -> dataset -> model dir."""
    from cprec.core.schemas import TOKENIZER_DIR
    from cprec.data_prep.downstream import sft_train_blocks, write_sft_data

    sft = config.sft
    tokenizer = storage.join(corpus_dir, TOKENIZER_DIR)
    data_dirs, blocks = {}, {}
    for entry in datasets:

        def configure(out: str, split_dir: str = entry["split_dir"]) -> SFTDataStage:
            return SFTDataStage(
                split_dir, tokenizer, out, sft.block_len, sft.max_items, sft.valid_fraction, config.seed
            )

        def produce(stage: SFTDataStage) -> None:
            write_sft_data(**dataclasses.asdict(stage))

        path = runner.run(f"sft-data-{slug(entry['name'])}", configure, produce).path
        data_dirs[entry["name"]] = sft_token_dir(path)
        blocks[entry["name"]] = sft_train_blocks(path)

    section = sft_section(config)
    runs = []
    for label, model in models.items():
        for name, data_dir in data_dirs.items():
            run_section = section
            if sft.epochs > 0:
                run_section = layered(section, {"steps": epoch_steps(section, blocks[name], sft.epochs)})
            runs.append((f"sft-{slug(label)}-{slug(name)}", run_section, data_dir, model))
    tuned = iter(train_stages(runner, runs))
    return {label: {name: next(tuned) for name in data_dirs} for label in models}


def sft_token_dir(stage_dir: str) -> str:
    from cprec.data_prep.downstream import SFT_TOKENS_DIR

    return storage.join(stage_dir, SFT_TOKENS_DIR)


def epoch_steps(section: dict, blocks: int, epochs: float) -> int:
    """Steps for `epochs` passes over `blocks` training blocks at the section's batch shape."""
    from cprec.data_prep.downstream import epoch_steps as steps_for
    from cprec.trainer.config import TrainConfig

    shape = load_config(TrainConfig, base=layered(section, {"data_dir": PLACEHOLDER, "output_dir": PLACEHOLDER}))
    per_step = shape.micro_batch_size * shape.grad_accum * shape.scaling.num_workers
    return steps_for(blocks, epochs, per_step)


# -- evaluation -------------------------------------------------------------------------------------


def eval_methods(
    config: RunConfig, models: dict[str, str], tuned: dict[str, dict[str, str]], fine_tuned_on: list[str]
) -> list[dict]:
    """The recipe's methods: the baselines, then each model zero-shot and, where fine-tuned, after SFT.
    `models`: label -> model dir (Base, CPRec, the variants); `tuned`: label -> dataset -> model dir."""
    methods: list[dict] = [
        {"kind": "popularity", "name": "Popularity"},
        {"kind": "content", "name": "Content (TF-IDF)"},
        {"kind": "sasrec", "name": "SASRec"},
    ]
    for label, model in models.items():
        methods.append({"kind": "llm", "name": f"{label} zero-shot", "model": model, "base": label})
        if label in tuned:
            methods.append(
                {
                    "kind": "llm",
                    "name": f"{label} + SFT",
                    "models": tuned[label],
                    "datasets": list(fine_tuned_on),
                    "base": label,
                    "fine_tuned": True,
                }
            )
    return methods


def eval_config(sections: StageSections, datasets: list[dict], methods: list[dict], out_dir: str) -> EvalConfig:
    """The run's EvalConfig: its eval section and seed over the prepared splits and the given methods."""
    from cprec.evaluator.config import EvalConfig

    fixed = {"world": "", "datasets": datasets, "methods": methods, "out_dir": out_dir}
    return load_config(EvalConfig, base=layered(seeded(sections, sections.eval), fixed))


def eval_stage(runner: StageRunner, sections: StageSections, datasets: list[dict], methods: list[dict]) -> str:
    from cprec.evaluator.evaluate import evaluate

    return runner.run("eval", lambda out: eval_config(sections, datasets, methods, out), evaluate).path


# -- the plan, checked before anything runs ---------------------------------------------------------


def check_plan(config: RunConfig, world_json: str) -> list[str]:
    """Every stage's config checked against the world before any stage runs: unknown dataset names,
    an empty downstream list, a missing source file or a bad option fail at second zero, not after
    the training. Returns the world's downstream dataset names, in order."""
    from cprec.data_prep import scan
    from cprec.data_prep.build import BuildConfig, resolve_sources

    if config.base_model:
        from cprec.core.tokenizer import load_tokenizer

        if storage.is_local(config.base_model) and not storage.local_path(config.base_model).exists():
            raise CPRecError(
                f"base_model {config.base_model} does not exist (a known model is fetched with "
                f"`cprec model fetch smollm2-135m {config.base_model}`)"
            )
        load_tokenizer(config.base_model, what="base_model", model_vocab_check=True)  # a model is there
    control = any(v.data == "control" for v in config.variants)
    data = corpus_section(config, config.data)
    for section in [data, *([layered(data, config.control)] if control else [])]:
        build_config = load_config(BuildConfig, base=layered(section, {"world": world_json, "out_dir": PLACEHOLDER}))
        build_config.validate()
        scan.plan(*resolve_sources(build_config))  # files found, layouts and headers read
    downstream = [spec.name for spec in downstream_specs(world_json)]
    unknown = sorted(set(config.sft.datasets) - set(downstream))
    if unknown:
        raise CPRecError(
            f"sft.datasets names {unknown}, which world {world_json} does not list "
            f"(its downstream datasets: {', '.join(downstream)})"
        )
    datasets = [{"name": name, "split_dir": PLACEHOLDER} for name in downstream]
    targets = sft_targets(config.sft, downstream)
    labels = [BASE_NAME, CPREC_NAME, *(v.name for v in config.variants)]
    tuned_labels = [BASE_NAME, CPREC_NAME, *(v.name for v in config.variants if v.sft)]
    tuned = {label: {name: PLACEHOLDER for name in targets} for label in tuned_labels}
    eval_config(config, datasets, eval_methods(config, dict.fromkeys(labels, PLACEHOLDER), tuned, targets), PLACEHOLDER)
    sections = {"base": base_section(config), "cpt": cpt_section(config), "sft": sft_section(config)}
    sections.update({v.name: variant_section(config, v) for v in config.variants})
    for name, section in sections.items():
        try:
            train_config(section, PLACEHOLDER, "", PLACEHOLDER, "check").validate()
        except CPRecError as exc:
            raise CPRecError(f"{name} training: {exc}") from exc
    return downstream


def variant_section(config: RunConfig, variant: Any) -> dict:
    return layered(cpt_section(config), variant.train)
