"""`cprec run`: the whole pipeline on a preset, every stage content-addressed and reusable.

world -> data (pre-training corpus) -> base (tiny model on catalogue text alone, every platform's
catalogue and no behaviour: the stand-in for a general LLM's open-world knowledge) -> cpt (CPRec:
continual pre-training from the base with WSA) and the ablation variants -> eval (five downstream
datasets, every method) -> report.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from cprec.core import storage
from cprec.core.config import layered, load_config
from cprec.core.errors import CPRecError
from cprec.pipeline.config import STAGES, RunConfig
from cprec.pipeline.stages import PLACEHOLDER, StageRunner

if TYPE_CHECKING:
    from cprec.evaluator.config import EvalConfig

BASE_NAME = "Base"
CPREC_NAME = "CPRec"


def _upto(config: RunConfig, stage: str) -> bool:
    return STAGES.index(stage) <= STAGES.index(config.until)


def run(config: RunConfig, preset: str) -> str:
    """Runs the stages up to `config.until`; returns the root directory (report.md at its top)."""
    from cprec.data_prep.build import BuildConfig, build

    config.validate()
    root = storage.absolute(config.out_dir or f"runs/{storage.safe_name(preset, 'preset name')}")
    seeded = {"seed": config.seed}
    downstream: list[str] = []
    if config.world:  # checked before anything is written
        downstream = check_plan(config, storage.absolute(config.world))
    runner, world_json = world_stage(root, config.world, layered(seeded, config.synth))
    if not config.world and _upto(config, "data"):  # a generated world exists only now
        downstream = check_plan(config, world_json)
    if not _upto(config, "data"):
        return _finish(runner, root, preset, config)

    def build_stage(name: str, section: dict) -> str:
        def configure(out: str) -> BuildConfig:
            return load_config(BuildConfig, base=layered(section, {"world": world_json, "out_dir": out}))

        return runner.run(name, configure, build).path

    data_dir = build_stage("data", config.data)
    data_dirs = {"main": data_dir}
    if any(v.data == "control" for v in config.variants):
        data_dirs["control"] = build_stage("control", layered(config.data, config.control))
    if not _upto(config, "base"):
        return _finish(runner, root, preset, config)

    train_section = layered(seeded, config.train)
    base_model = train_stage(runner, "base", layered(train_section, config.base), data_dir, model="")
    if not _upto(config, "cpt"):
        return _finish(runner, root, preset, config)

    cpt_section = layered(train_section, config.cpt)
    models = {CPREC_NAME: train_stage(runner, "cpt", cpt_section, data_dir, model=base_model)}
    for variant in config.variants:
        stage = "variant-" + "".join(c if c.isalnum() else "-" for c in variant.name.lower()).strip("-")
        models[variant.name] = train_stage(
            runner, stage, layered(cpt_section, variant.train), data_dirs[variant.data], model=base_model
        )
    if not _upto(config, "eval"):
        return _finish(runner, root, preset, config)

    eval_dir = _evaluate(runner, config, world_json, eval_methods(config, base_model, models, downstream))
    if _upto(config, "report"):
        from cprec.pipeline.report import write_run_report

        write_run_report(root, preset, runner.manifest(), eval_dir, _training_dirs(runner))
    return _finish(runner, root, preset, config)


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


def train_stage(runner: StageRunner, stage: str, section: dict, data_dir: str, model: str) -> str:
    """One training run as a stage; returns the exported model directory."""
    from cprec.trainer.config import TrainConfig
    from cprec.trainer.fit import MODEL_DIR, fit

    def configure(out: str) -> TrainConfig:
        fixed = {"data_dir": data_dir, "model": model, "output_dir": out, "checkpoint": {"name": stage}}
        return load_config(TrainConfig, base=layered(section, fixed))

    result = runner.run(stage, configure, fit)
    return storage.join(result.path, MODEL_DIR)


def _training_dirs(runner: StageRunner) -> dict[str, str]:
    return {
        r.name: r.path for r in runner.results if r.name in ("base", "cpt") or r.name.startswith("variant-")
    }


def _evaluate(runner: StageRunner, config: RunConfig, world_json: str, methods: list[dict]) -> str:
    from cprec.evaluator.evaluate import evaluate

    return runner.run("eval", lambda out: eval_config(config, world_json, methods, out), evaluate).path


def sft_datasets(config: RunConfig, downstream: list[str]) -> list[str]:
    """The downstream datasets the SFT methods fine-tune on; [] = all."""
    if config.sft_datasets:
        return list(config.sft_datasets)
    if config.sft_limit and config.sft_limit < len(downstream):
        return downstream[: config.sft_limit]
    return []


def eval_methods(config: RunConfig, base_model: str, models: dict[str, str], downstream: list[str]) -> list[dict]:
    """The recipe's methods: the baselines, then each model zero-shot (and fine-tuned where asked);
    `downstream`: the world's downstream dataset names, in order."""
    chosen = sft_datasets(config, downstream)
    sft_only = {"datasets": chosen} if chosen else {}
    methods: list[dict] = [
        {"kind": "popularity", "name": "Popularity"},
        {"kind": "content", "name": "Content (TF-IDF)"},
        {"kind": "sasrec", "name": "SASRec"},
        {"kind": "llm", "name": f"{BASE_NAME} zero-shot", "model": base_model},
        {"kind": "sft", "name": f"{BASE_NAME} + SFT", "model": base_model, **sft_only},
        {"kind": "llm", "name": f"{CPREC_NAME} zero-shot", "model": models[CPREC_NAME]},
        {"kind": "sft", "name": f"{CPREC_NAME} + SFT", "model": models[CPREC_NAME], **sft_only},
    ]
    for variant in config.variants:
        methods.append({"kind": "llm", "name": f"{variant.name} zero-shot", "model": models[variant.name]})
        if variant.sft:
            methods.append(
                {"kind": "sft", "name": f"{variant.name} + SFT", "model": models[variant.name], **sft_only}
            )
    return methods


def eval_config(config: RunConfig, world_json: str, methods: list[dict], out_dir: str) -> EvalConfig:
    """The run's EvalConfig for `methods`: its eval section, its seed, SFT runs shaped like its training."""
    from cprec.evaluator.config import EvalConfig

    seeded = {"seed": config.seed}
    fixed = {"world": world_json, "methods": methods, "sft": {"train": layered(seeded, config.train, config.sft)}}
    return load_config(EvalConfig, base=layered(seeded, config.eval, fixed, {"out_dir": out_dir}))


def check_plan(config: RunConfig, world_json: str) -> list[str]:
    """Every stage's config checked against the world before any stage runs: unknown dataset names,
    an empty downstream list, a missing source file or a bad option fail at second zero, not after
    the training. Returns the world's downstream dataset names, in order."""
    from cprec.data_prep import scan
    from cprec.data_prep.build import BuildConfig, resolve_sources
    from cprec.evaluator.datasets import dataset_specs
    from cprec.trainer.config import TrainConfig

    control = any(v.data == "control" for v in config.variants)
    for section in [config.data, *([layered(config.data, config.control)] if control else [])]:
        build_config = load_config(BuildConfig, base=layered(section, {"world": world_json, "out_dir": PLACEHOLDER}))
        build_config.validate()
        scan.plan(*resolve_sources(build_config))  # files found, layouts and headers read
    specs = dataset_specs(eval_config(config, world_json, [{"kind": "popularity"}], PLACEHOLDER))
    downstream = [spec.name for spec in specs]
    unknown = sorted(set(config.sft_datasets) - set(downstream))
    if unknown:
        raise CPRecError(
            f"sft_datasets names {unknown}, which world {world_json} does not list "
            f"(its downstream datasets: {', '.join(downstream)})"
        )
    eval_config(config, world_json, eval_methods(config, PLACEHOLDER, _every_model(config), downstream), PLACEHOLDER)
    train = layered({"seed": config.seed}, config.train)
    fixed = {"data_dir": PLACEHOLDER, "output_dir": PLACEHOLDER}
    sections = {"base": layered(train, config.base), "cpt": layered(train, config.cpt), "sft": layered(train, config.sft)}
    sections.update({v.name: layered(train, config.cpt, v.train) for v in config.variants})
    for name, section in sections.items():
        try:
            load_config(TrainConfig, base=layered(section, fixed)).validate()
        except CPRecError as exc:
            raise CPRecError(f"{name} training: {exc}") from exc
    return downstream


def _every_model(config: RunConfig) -> dict[str, str]:
    return {name: PLACEHOLDER for name in [CPREC_NAME, *(v.name for v in config.variants)]}


def world_fingerprint(world_json: str) -> str:
    """A digest of the world file's bytes and of every source file's path, size and modification time."""
    from cprec.core.world import load_world, world_source

    world = load_world(world_json)
    entries = [("pretrain", i, e) for i, e in enumerate(world.get("pretrain") or [])]
    entries += [("downstream", i, (e or {}).get("source")) for i, e in enumerate(world.get("downstream") or [])]
    paths = [world_source(world_json, entry, f"{section}[{i}]").get("path", "") for section, i, entry in entries]
    return storage.content_digest([world_json, *(p for p in paths if p)])


def _finish(runner: StageRunner, root: str, preset: str, config: RunConfig) -> str:
    fs, path = storage.filesystem(storage.join(root, "run.json"))
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as stream:
        record = {"preset": preset, "until": config.until, "stages": runner.manifest()}
        stream.write(json.dumps(record, indent=2).encode())
    return root
