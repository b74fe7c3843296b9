"""`cprec tune`: Ray Tune over the WSA phase proportions (warmup, stable, annealing).

The world, the pre-training corpus, the base model and the downstream splits are the `cprec run`
stages (recipe.py: same sections, same digests, so a tune reuses what a run of the same preset and
seed built, and the other way round). Each trial is a Tune function that
continually pre-trains from the base model through the trainer's TorchTrainer (Ray Train V2: the
trial builds and fits the trainer, which reports to Tune through TuneReportCallback), so ASHA can
stop it early on validation loss; a trial that finishes scores the zero-shot LLM on each
downstream dataset and reports the objective: the mean validation NDCG@10.

Each trial function holds `trial_cpus`; its trainer's workers and the evaluator's scoring actors
take theirs from the cluster while it runs. Tune only knows the former, so the number of trials at
once is capped at what the cluster holds for all of them (`trials_at_once`): otherwise more train
worker groups ask for placement groups than fit, and Ray Train gives up on them after its
worker-group start timeout.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from cprec.core import storage
from cprec.core.config import config_digest, layered, load_config, option, to_yaml
from cprec.core.errors import CPRecError
from cprec.pipeline import recipe
from cprec.pipeline.config import StageSections

log = logging.getLogger("cprec.pipeline")

# The `cprec run` preset sections a tune reads; the others (control, variants, sft) do not apply.
SECTIONS = tuple(f.name for f in dataclasses.fields(StageSections))
OBJECTIVE = "objective"
METRIC = "ndcg@10"
METHOD_LABEL = "zero-shot"
SPACE_FILE = "cprec_tune_space.json"  # the search space an experiment dir was started with
TABLE_COLUMNS = ("trial", "status", "warmup", "stable", "annealing", "shape", "peak_lr", "step", "val_loss")


@dataclass
class AshaOptions:
    enabled: bool = option(True, help="stop trials early with ASHA on validation loss (metric val_loss, mode min)")
    grace_period: int = option(0, help="steps before a trial can be stopped (0 = the first report, report_every)")
    reduction_factor: float = option(2.0, help="ASHA keeps the best 1/reduction_factor of the trials at each rung")


@dataclass
class TuneConfig(StageSections):
    """The stage sections of `cprec run` (the trials' CPT from its `cpt`, their scoring from its
    `eval`), plus the search."""

    name: str = option("tune", help="experiment name: Tune's experiment dir and the result files are <out_dir>/<name>")
    search: str = option(
        "grid",
        help="grid (every point of the simplex grid of `grid_step`) or random (num_samples uniform points)",
    )
    grid_step: float = option(0.25, help="grid spacing over the simplex, 1/n for an integer n (0.25 = 15 points)")
    num_samples: int = option(8, help="search=random: how many (warmup, stable, annealing) points to draw")
    search_seed: int = option(0, help="search=random: seed of the drawn points")
    points: list[list[float]] = option(
        [], help="explicit [warmup, stable, annealing] points, each summing to 1; overrides `search`"
    )
    shapes: list[str] = option([], help="annealing shapes to try, crossed with the points ([] = the cpt section's)")
    peak_lrs: list[float] = option(
        [], help="peak learning rates to try, crossed with the rest ([] = the cpt section's)"
    )
    report_every: int = option(
        0,
        help="steps between a trial's validation loss reports, each with a checkpoint (0 = a quarter of the steps)",
    )
    asha: AshaOptions = option(AshaOptions(), help="early stopping")
    trial_cpus: float = option(0.1, help="CPUs held by each trial function (its trainer and scorers hold their own)")
    data_cpus: float = option(
        0.25, help="CPUs left free per running trial for the trainer's Ray Data reads (0.25 per read task)"
    )
    max_concurrent_trials: int = option(
        0, help="trials at once; 0 = as many as the cluster's CPUs/GPUs hold with their workers and scorers"
    )
    resume: bool = option(
        True, help="continue the experiment at <out_dir>/<name> if it exists (finished trials are kept)"
    )

    def validate(self) -> None:
        super().validate()
        storage.safe_name(self.name, "tune: name")  # the experiment's directory
        if self.search not in ("grid", "random"):
            raise CPRecError(f"tune: search must be grid or random, got {self.search!r}")
        steps = round(1 / self.grid_step) if self.grid_step > 0 else 0
        if steps < 1 or abs(steps * self.grid_step - 1) > 1e-9:
            raise CPRecError(f"tune: grid_step must be 1/n for a whole n, got {self.grid_step}")
        if self.num_samples < 1:
            raise CPRecError(f"tune: num_samples must be >= 1, got {self.num_samples}")
        for point in self.points:
            if len(point) != 3 or min(point) < 0 or abs(sum(point) - 1) > 1e-6:
                raise CPRecError(f"tune: each point is [warmup, stable, annealing] >= 0 summing to 1, got {point}")
        from cprec.trainer.config import SHAPES

        if not set(self.shapes) <= set(SHAPES):
            raise CPRecError(f"tune: shapes must be among {', '.join(SHAPES)}, got {self.shapes}")
        if any(lr <= 0 for lr in self.peak_lrs):
            raise CPRecError(f"tune: peak_lrs must be > 0, got {self.peak_lrs}")
        if self.report_every < 0 or self.asha.grace_period < 0:
            raise CPRecError("tune: report_every and asha.grace_period must be >= 0")
        if self.asha.reduction_factor <= 1:
            raise CPRecError(f"tune: asha.reduction_factor must be > 1, got {self.asha.reduction_factor}")
        if self.trial_cpus <= 0 or self.data_cpus < 0 or self.max_concurrent_trials < 0:
            raise CPRecError("tune: trial_cpus must be > 0, data_cpus and max_concurrent_trials >= 0")


@dataclass
class TuneResult:
    experiment_dir: str  # Tune's experiment dir (restorable), also holding the files below
    trials: list[dict]  # one row per trial: TABLE_COLUMNS, per-dataset NDCG@10 and `objective`
    best: dict  # the finished trial with the highest objective
    best_config: str  # best_train.yaml, a TrainConfig for `cprec train fit --config`


def preset_sections(preset: dict) -> dict:
    """The parts of a `cprec run` preset that a tune reads."""
    return {k: v for k, v in preset.items() if k in SECTIONS}


def simplex_grid(step: float) -> list[list[float]]:
    """Every (warmup, stable, annealing) with coordinates on multiples of `step` summing to 1."""
    n = round(1 / step)
    return [[i / n, j / n, (n - i - j) / n] for i in range(n + 1) for j in range(n + 1 - i)]


def random_points(count: int, seed: int) -> list[list[float]]:
    """Uniform draws from the simplex (Dirichlet(1, 1, 1)), rounded to 0.01 and still summing to 1."""
    drawn = np.random.default_rng(seed).dirichlet([1.0, 1.0, 1.0], size=count)
    points = []
    for w, s, _ in drawn:
        w, s = round(float(w), 2), round(float(s), 2)
        points.append([w, s, round(1 - w - s, 2)])
    return points


def search_points(config: TuneConfig) -> list[list[float]]:
    if config.points:
        return [list(map(float, p)) for p in config.points]
    if config.search == "random":
        return random_points(config.num_samples, config.search_seed)
    return simplex_grid(config.grid_step)


def trials_at_once(config: TuneConfig, cpt: Any, eval_section: dict, cluster: dict[str, float]) -> int:
    """How many trials fit the cluster together with their train workers and scoring actors.

    A trial first trains (workers of `cpt.scaling`, plus CPUs for Ray Data reads), then scores
    (the evaluator's `llm.num_actors` actors), so it needs the larger of the two at any time.
    """
    from cprec.evaluator.config import LLMConfig

    llm = load_config(LLMConfig, base=eval_section.get("llm") or {})
    scaling = cpt.scaling
    train_cpus = scaling.num_workers * scaling.cpus_per_worker + config.data_cpus
    train_gpus = scaling.num_workers if scaling.use_gpu else 0
    scorer_gpu = llm.device == "cuda" or (llm.device == "auto" and cluster.get("GPU", 0) > 0)
    score_cpus = llm.num_actors * llm.cpus_per_actor
    score_gpus = llm.num_actors if scorer_gpu else 0
    cpus = config.trial_cpus + max(train_cpus, score_cpus)
    gpus = max(train_gpus, score_gpus)
    fits = math.floor(cluster.get("CPU", 0) / cpus + 1e-9)
    if gpus:
        fits = min(fits, math.floor(cluster.get("GPU", 0) / gpus + 1e-9))
    if config.max_concurrent_trials:
        if config.max_concurrent_trials > fits:
            log.warning(
                "max_concurrent_trials=%d is more than the %d trials the cluster holds now (%s); "
                "fine only if it autoscales",
                config.max_concurrent_trials,
                fits,
                cluster,
            )
        return config.max_concurrent_trials
    if fits < 1:
        raise CPRecError(
            f"one tune trial needs {cpus:g} CPUs and {gpus} GPUs (trial, train workers or scorers), the cluster "
            f"has {cluster.get('CPU', 0):g} CPUs and {cluster.get('GPU', 0):g} GPUs; lower cpt.scaling or "
            "eval.llm, or set max_concurrent_trials on an autoscaling cluster"
        )
    return fits


def tune(config: TuneConfig, preset: str = "custom") -> TuneResult:
    """Builds or reuses world, data, base model and downstream datasets, then runs (or resumes) the sweep."""
    import ray
    from ray import tune as ray_tune
    from ray.tune.schedulers import ASHAScheduler

    from cprec.core.raytools import init_ray

    config.validate()
    root = storage.absolute(config.out_dir or f"runs/{storage.safe_name(preset, 'preset name')}")
    # the stages as `cprec run` finds or makes them: same sections, same digests, shared outputs
    runner, world_json = recipe.world_stage(root, config.world, recipe.seeded(config, config.synth))
    recipe.track_base_model(runner, config)
    data_dir = recipe.corpus_stage(runner, "data", recipe.corpus_section(config, config.data), world_json)
    base_model = recipe.base_stage(runner, config, data_dir)
    datasets = recipe.downstream_stage(runner, config, world_json)
    downstream = [d["name"] for d in datasets]
    ks = recipe.eval_config(config, datasets, [{"kind": "popularity"}], "<trial>").ks
    if METRIC not in {f"ndcg@{k}" for k in ks}:
        raise CPRecError(f"tune: the objective is valid {METRIC}; eval.ks must include 10, got {ks}")

    cpt_section = recipe.cpt_section(config)
    cpt = recipe.train_config(cpt_section, data_dir, base_model, "<trial>", "cpt")
    report_every = config.report_every or max(1, cpt.steps // 4)
    grace = config.asha.grace_period or report_every
    space = {
        "proportions": search_points(config),
        "shape": config.shapes or [cpt.schedule.shape],
        "peak_lr": config.peak_lrs or [cpt.schedule.peak_lr],
    }
    experiment_dir = storage.join(root, config.name)
    setup = {
        "cpt": cpt_section,
        "data_dir": data_dir,
        "base_model": base_model,
        "report_every": report_every,
        "work_dir": storage.join(experiment_dir, "work"),
        "scoring": StageSections(seed=config.seed, eval=config.eval),
        "datasets": datasets,
    }
    # Restoring an experiment re-runs its own search space: a changed one needs a new name.
    fingerprint = config_digest(space, setup, report_every, grace, config.asha)
    init_ray()
    at_once = trials_at_once(config, cpt, config.eval, ray.cluster_resources())

    trainable = ray_tune.with_resources(ray_tune.with_parameters(run_trial, setup=setup), {"cpu": config.trial_cpus})
    if _can_restore(experiment_dir):
        _check_space(experiment_dir, fingerprint, config.resume)
        print(f"[cprec tune] resuming {experiment_dir}", flush=True)
        tuner = ray_tune.Tuner.restore(experiment_dir, trainable, resume_errored=True)
    else:
        scheduler = None
        if config.asha.enabled and cpt.steps > 1:
            # Rungs stop short of the last step: a trial that trained to the end goes on to its scoring.
            scheduler = ASHAScheduler(
                time_attr="step",
                metric="val_loss",
                mode="min",
                max_t=cpt.steps - 1,
                grace_period=min(grace, cpt.steps - 1),
                reduction_factor=config.asha.reduction_factor,
                stop_last_trials=False,
            )
        tuner = ray_tune.Tuner(
            trainable,
            param_space={key: ray_tune.grid_search(values) for key, values in space.items()},
            # Tune's default search (BasicVariantGenerator) expands the grid, at most `at_once` trials running.
            tune_config=ray_tune.TuneConfig(scheduler=scheduler, max_concurrent_trials=at_once),
            run_config=ray_tune.RunConfig(name=config.name, storage_path=root, verbose=1),
        )
        storage.write_text(
            storage.join(experiment_dir, SPACE_FILE), json.dumps({"digest": fingerprint, **space}, indent=2)
        )
    print(f"[cprec tune] {_count(space)} trials, {at_once} at once -> {experiment_dir}", flush=True)
    grid = tuner.fit()

    rows = trial_rows(grid, downstream)
    finished = [r for r in rows if r.get(OBJECTIVE) is not None]
    best = max(finished, key=lambda r: r[OBJECTIVE]) if finished else None
    write_table(rows, downstream, experiment_dir)
    plot_simplex(rows, storage.join(experiment_dir, "simplex.png"))
    if best is None:
        errors = [r.error for r in grid if r.error is not None]
        first = f"; the first error: {str(errors[0]).strip().splitlines()[-1]}" if errors else ""
        raise CPRecError(
            f"no tune trial finished ({len(errors)} of {len(rows)} failed{first}); see {experiment_dir}/trials.md"
        )
    best_config = storage.join(experiment_dir, "best_train.yaml")
    best_train = recipe.train_config(
        layered(cpt_section, {"schedule": _schedule(best)}),
        data_dir,
        base_model,
        storage.join(experiment_dir, "best"),
        "cpt-best",
    )
    storage.write_text(best_config, to_yaml(best_train))
    print(
        f"[cprec tune] best: warmup {best['warmup']:g} stable {best['stable']:g} annealing "
        f"{best['annealing']:g} {best['shape']} peak_lr {best['peak_lr']:g}: mean valid {METRIC} "
        f"{best[OBJECTIVE]:.4f} -> {best_config}",
        flush=True,
    )
    return TuneResult(experiment_dir, rows, best, best_config)


def run_trial(params: dict, setup: dict) -> None:
    """One trial: continual pre-training with the trial's schedule, then the zero-shot downstream score.

    Paths are named after the trial id, which a restored experiment keeps: a trial interrupted
    mid-training resumes from its last checkpoint, one interrupted while scoring trains no more.
    """
    from ray import tune as ray_tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from cprec.evaluator.evaluate import evaluate
    from cprec.trainer.fit import fit

    work = storage.join(setup["work_dir"], ray_tune.get_context().get_trial_id())
    every = setup["report_every"]
    # Each report (a checkpoint's) carries the validation loss ASHA ranks on.
    options = {"schedule": _schedule(params), "checkpoint": {"every": every}, "eval_every": every}
    train_config = recipe.train_config(
        layered(setup["cpt"], options), setup["data_dir"], setup["base_model"], storage.join(work, "train"), "cpt"
    )
    trained = fit(train_config, callbacks=[TuneReportCallback()])
    methods = [{"kind": "llm", "name": METHOD_LABEL, "model": trained.model_dir, "base": "CPRec"}]
    eval_config = recipe.eval_config(setup["scoring"], setup["datasets"], methods, storage.join(work, "eval"))
    results = _outside_trial_placement_group(evaluate, eval_config)
    scores = {name: valid_score(results, name) for name in (d["name"] for d in setup["datasets"])}
    # Tune wants the scheduler's metric in every report; ASHA has ranked this step already (see tune()).
    ray_tune.report(
        {
            OBJECTIVE: float(np.mean(list(scores.values()))),
            **{f"{METRIC}/{name}": score for name, score in scores.items()},
            "step": train_config.steps,
            "val_loss": trained.metrics.get("val_loss"),
            "model_dir": trained.model_dir,
        }
    )


def valid_score(results, dataset: str) -> float:
    """The trial method's validation NDCG@10 on `dataset` from the evaluation's record (`Results`)."""
    return float(results.datasets[dataset].methods[METHOD_LABEL].valid[METRIC])


def _outside_trial_placement_group(function: Any, *args: Any) -> Any:
    """Runs `function` in a Ray task scheduled outside the trial's placement group.

    Tune captures a trial's child tasks and actors into the trial's placement group, which holds only
    `trial_cpus`; the evaluator's scoring actors would not fit there. Ray Train places its own workers;
    this does the same for the scorers, whose share `trials_at_once` has counted.
    """
    import ray

    return ray.get(ray.remote(num_cpus=0, scheduling_strategy="DEFAULT")(function).remote(*args))


def _schedule(params: dict) -> dict:
    if "proportions" in params:
        warmup, stable, annealing = params["proportions"]
    else:
        warmup, stable, annealing = params["warmup"], params["stable"], params["annealing"]
    return {
        "warmup": warmup,
        "stable": stable,
        "annealing": annealing,
        "shape": params["shape"],
        "peak_lr": params["peak_lr"],
    }


def trial_rows(grid: Any, datasets: list[str]) -> list[dict]:
    """One row per trial from Tune's ResultGrid, in trial order."""
    rows = []
    for result in grid:
        metrics = result.metrics or {}
        history = result.metrics_dataframe
        val_loss = step = None
        if history is not None and len(history):
            if "val_loss" in history and history["val_loss"].notna().any():
                val_loss = float(history["val_loss"].dropna().iloc[-1])
            if "step" in history and history["step"].notna().any():
                step = int(history["step"].dropna().iloc[-1])
        if result.error is not None:
            status = "error"
        elif OBJECTIVE in metrics:
            status = "finished"
        else:
            status = "stopped early"
        schedule = _schedule(result.config)
        row = {
            "trial": metrics.get("trial_id") or result.path.rsplit("/", 1)[-1],
            "status": status,
            **{k: schedule[k] for k in ("warmup", "stable", "annealing", "shape", "peak_lr")},
            "step": step,
            "val_loss": val_loss,
            **{f"{METRIC}/{name}": metrics.get(f"{METRIC}/{name}") for name in datasets},
            OBJECTIVE: metrics.get(OBJECTIVE),
        }
        rows.append(row)
    return sorted(rows, key=lambda r: r["trial"])


def write_table(rows: list[dict], datasets: list[str], experiment_dir: str) -> None:
    """trials.csv (every column) and trials.md (readable, best objective first)."""
    import csv

    columns = [*TABLE_COLUMNS, *[f"{METRIC}/{name}" for name in datasets], OBJECTIVE]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows({c: ("" if row.get(c) is None else row.get(c)) for c in columns} for row in rows)
    storage.write_text(storage.join(experiment_dir, "trials.csv"), text.getvalue())

    def cell(value: Any) -> str:
        if value is None:
            return "–"
        if isinstance(value, float):
            return f"{value:.4g}"
        return str(value)

    ranked = sorted(rows, key=lambda r: (r.get(OBJECTIVE) is None, -(r.get(OBJECTIVE) or 0.0), r["trial"]))
    lines = [
        f"# WSA tune: {len(rows)} trials, objective = mean downstream validation {METRIC} (zero-shot)",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
        *["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in ranked],
        "",
    ]
    storage.write_text(storage.join(experiment_dir, "trials.md"), "\n".join(lines))


def plot_simplex(rows: list[dict], uri: str) -> None:
    """The objective over the (warmup, stable, annealing) simplex, drawn as a ternary scatter in 2-D.

    Corners: warmup bottom left, stable bottom right, annealing on top; a point's distance from a
    side is its share of the opposite corner's phase. Colour = the best objective at that point
    over shapes and peak LRs; grey crosses = trials that did not finish (stopped early or failed).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def xy(row: dict) -> tuple[float, float]:
        return row["stable"] + row["annealing"] / 2, row["annealing"] * math.sqrt(3) / 2

    best: dict[tuple, dict] = {}
    unfinished = []
    for row in rows:
        key = (row["warmup"], row["stable"], row["annealing"])
        if row.get(OBJECTIVE) is None:
            unfinished.append(row)
        elif key not in best or row[OBJECTIVE] > best[key][OBJECTIVE]:
            best[key] = row
    fig, ax = plt.subplots(figsize=(6, 5.4))
    corners = np.array([[0, 0], [1, 0], [0.5, math.sqrt(3) / 2], [0, 0]])
    ax.plot(corners[:, 0], corners[:, 1], color="black", linewidth=1)
    for (x, y), label, align in zip(corners[:3], ("warmup", "stable", "annealing"), ("right", "left", "center")):
        ax.annotate(label, (x, y), xytext=(0, -14 if y == 0 else 6), textcoords="offset points", ha=align)
    if unfinished:
        points = np.array([xy(r) for r in unfinished])
        ax.scatter(points[:, 0], points[:, 1], marker="x", color="grey", label="stopped early / failed")
    if best:
        points = np.array([xy(r) for r in best.values()])
        values = np.array([r[OBJECTIVE] for r in best.values()])
        drawn = ax.scatter(points[:, 0], points[:, 1], c=values, cmap="viridis", s=120, edgecolors="black")
        fig.colorbar(drawn, ax=ax, shrink=0.7, label=f"mean valid {METRIC} (zero-shot)")
        for (x, y), value in zip(points, values):
            ax.annotate(f"{value:.3f}", (x, y), xytext=(9, -3), textcoords="offset points", fontsize=7)
        top = max(best.values(), key=lambda r: r[OBJECTIVE])
        ax.scatter(*xy(top), s=380, facecolors="none", edgecolors="red", linewidths=2, label="best", zorder=3)
    if unfinished or best:
        ax.legend(loc="upper left", fontsize=7, markerscale=0.5)
    ax.set_title("WSA phase proportions: downstream objective")
    ax.set_xlim(-0.12, 1.12)
    ax.set_ylim(-0.12, 1.0)
    ax.set_aspect("equal")
    ax.axis("off")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    storage.write_bytes(uri, buffer.getvalue())


def _can_restore(experiment_dir: str) -> bool:
    from ray import tune as ray_tune

    if storage.is_local(experiment_dir):
        return ray_tune.Tuner.can_restore(str(storage.local_path(experiment_dir)))
    return ray_tune.Tuner.can_restore(experiment_dir)


def _check_space(experiment_dir: str, fingerprint: str, resume: bool) -> None:
    if not resume:
        raise CPRecError(f"experiment {experiment_dir} exists and resume=false: choose another name= or remove it")
    uri = storage.join(experiment_dir, SPACE_FILE)
    stored = json.loads(storage.read_text(uri)).get("digest") if storage.exists(uri) else None
    if stored != fingerprint:
        raise CPRecError(
            f"experiment {experiment_dir} was started with another search space or stage config; "
            "resume it unchanged, or choose another name="
        )


def _count(space: dict) -> int:
    return math.prod(len(values) for values in space.values())
