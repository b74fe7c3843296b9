"""`cprec run`: the whole recipe (recipe.py) on a preset, every stage content-addressed and reusable.

world -> data -> downstream splits -> the world's profile (profile.py) -> base -> cpt + ablations
(one worker group) -> SFT data and every fine-tuning (one worker group) -> eval -> report, stopping
after `until` (`until=profile`: what a world is like, before any training).
"""

from __future__ import annotations

from cprec.core import storage
from cprec.core.config import layered
from cprec.pipeline import recipe
from cprec.pipeline.config import STAGES, RunConfig
from cprec.pipeline.stages import StageRunner


def run(config: RunConfig, preset: str) -> str:
    """Runs the stages up to `config.until`; returns the root directory (report.md at its top)."""
    config.validate()
    root = storage.absolute(config.out_dir or f"runs/{storage.safe_name(preset, 'preset name')}")
    if config.world:  # checked before anything is written
        recipe.check_plan(config, storage.absolute(config.world))
    runner, world_json = recipe.world_stage(root, config.world, recipe.seeded(config, config.synth))
    if not config.world and _upto(config, "data"):  # a generated world exists only now
        recipe.check_plan(config, world_json)
    recipe.track_base_model(runner, config)
    try:
        _stages(runner, config, world_json, root, preset)
    finally:
        _write_manifest(runner, root, preset, config)
    return root


def _upto(config: RunConfig, stage: str) -> bool:
    return STAGES.index(stage) <= STAGES.index(config.until)


def _stages(runner: StageRunner, config: RunConfig, world_json: str, root: str, preset: str) -> None:
    if not _upto(config, "data"):
        return
    data = recipe.corpus_section(config, config.data)
    data_dir = recipe.corpus_stage(runner, "data", data, world_json)
    data_dirs = {"main": data_dir}
    if any(v.data == "control" for v in config.variants):
        data_dirs["control"] = recipe.corpus_stage(runner, "control", layered(data, config.control), world_json)
    if not _upto(config, "downstream"):
        return
    datasets = recipe.downstream_stage(runner, config, world_json)
    if not _upto(config, "profile"):
        return
    profile_dir = recipe.profile_stage(runner, config, data_dir, datasets)
    if not _upto(config, "base"):
        return
    models = {recipe.BASE_NAME: recipe.base_stage(runner, config, data_dir)}
    if not _upto(config, "cpt"):
        return
    runs = [("cpt", recipe.cpt_section(config), data_dir, models[recipe.BASE_NAME])]
    runs += [
        (
            f"variant-{recipe.slug(v.name)}",
            recipe.variant_section(config, v),
            data_dirs[v.data],
            models[recipe.BASE_NAME],
        )
        for v in config.variants
    ]
    trained = recipe.train_stages(runner, runs)
    models.update(zip([recipe.CPREC_NAME, *(v.name for v in config.variants)], trained))
    if not _upto(config, "sft"):
        return
    targets = recipe.sft_targets(config.sft, [d["name"] for d in datasets])
    fine_tuned = [recipe.BASE_NAME, recipe.CPREC_NAME, *(v.name for v in config.variants if v.sft)]
    tuned = recipe.sft_stages(
        runner,
        config,
        {label: models[label] for label in fine_tuned},
        [d for d in datasets if d["name"] in targets],
        data_dir,
    )
    if not _upto(config, "eval"):
        return
    eval_dir = recipe.eval_stage(runner, config, datasets, recipe.eval_methods(config, models, tuned, targets))
    if _upto(config, "report"):
        from cprec.pipeline.report import write_run_report

        write_run_report(
            root, preset, runner.manifest(), eval_dir, _training_dirs(runner), world_label(config), profile_dir
        )


def world_label(config: RunConfig) -> str:
    """Which world a run ran on, as its report says it: the user's file, or the generated world with
    every synth setting the preset or the command line gave."""
    if config.world:
        return f"the user's world `{config.world}`"
    settings = {k: v for k, v in config.synth.items() if k != "out_dir"}
    given = ", ".join(f"{k}={v}" for k, v in sorted(settings.items()))
    return f"the generated world ({given or 'every synth default'}; seed {settings.get('seed', config.seed)})"


def _training_dirs(runner: StageRunner) -> dict[str, str]:
    return {r.name: r.path for r in runner.results if r.name in ("base", "cpt") or r.name.startswith("variant-")}


def _write_manifest(runner: StageRunner, root: str, preset: str, config: RunConfig) -> None:
    record = {
        "preset": preset,
        "until": config.until,
        "world": config.world or "generated",
        "stages": runner.manifest(),
    }
    storage.write_json(storage.join(root, "run.json"), record)
