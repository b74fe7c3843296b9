"""`cprec tune`: the simplex search space, resource sharing, the result files, and a two-trial tune on
the smoke preset that reuses the session's `cprec run` stages and resumes without re-running trials."""

from __future__ import annotations

import csv

import pytest
from smallworld import HAND_WRITTEN_WORLD

from cprec.core.cli import main
from cprec.core.config import load_config
from cprec.core.errors import CPRecError
from cprec.pipeline.presets import load_preset, preset_names
from cprec.pipeline.tune import (
    TuneConfig,
    plot_simplex,
    preset_sections,
    random_points,
    simplex_grid,
    trials_at_once,
    write_table,
)
from cprec.trainer.config import TrainConfig

TWO_POINTS = "points=[[0.1,0.6,0.3],[0.3,0.2,0.5]]"


def test_simplex_grid_covers_the_simplex_once():
    points = simplex_grid(0.25)
    assert len(points) == 15  # (n+1)(n+2)/2 for n = 4
    assert len({tuple(p) for p in points}) == 15
    assert all(abs(sum(p) - 1) < 1e-9 and min(p) >= 0 for p in points)
    assert [1.0, 0.0, 0.0] in points and [0.0, 0.0, 1.0] in points and [0.25, 0.5, 0.25] in points


def test_random_points_are_seeded_and_on_the_simplex():
    points = random_points(20, seed=3)
    assert points == random_points(20, seed=3) and points != random_points(20, seed=4)
    assert all(abs(sum(p) - 1) < 1e-9 and min(p) >= 0 for p in points)
    assert len({tuple(p) for p in points}) == 20


@pytest.mark.parametrize(
    "override,message",
    [
        ("points=[[0.5,0.6,0.1]]", "summing to 1"),
        ("points=[[0.5,0.5]]", "summing to 1"),
        ("grid_step=0.3", "grid_step must be 1/n"),
        ("search=bayes", "search must be grid or random"),
        ("shapes=[square]", "shapes must be among"),
        ("asha.reduction_factor=1", "reduction_factor must be > 1"),
        ("name=../x", r"tune: name '\.\./x' is not a safe name"),
    ],
)
def test_bad_options_are_one_line_errors(override, message):
    with pytest.raises(CPRecError, match=message):
        load_config(TuneConfig, overrides=[override])


@pytest.mark.parametrize("preset", preset_names())
def test_every_preset_loads_into_a_tune_and_its_trials(preset):
    from cprec.core.config import layered

    sections = load_preset(preset)
    config = load_config(TuneConfig, base=preset_sections(sections), overrides=[TWO_POINTS])
    assert config.cpt == sections.get("cpt", {}) and config.eval == sections.get("eval", {})
    schedule = {"warmup": 0.3, "stable": 0.2, "annealing": 0.5}
    paths = {"data_dir": "d", "output_dir": "o", "schedule": schedule}
    assert load_config(TrainConfig, base=layered(config.train, config.cpt, paths)).schedule.annealing == 0.5
    assert set(preset_sections({"cpt": {}, "variants": [], "sft": {}, "control": {}})) == {"cpt"}


def _cpt(workers: int, cpus: float, gpu: bool = False) -> TrainConfig:
    scaling = {"num_workers": workers, "cpus_per_worker": cpus, "use_gpu": gpu}
    return load_config(TrainConfig, base={"data_dir": "d", "output_dir": "o", "scaling": scaling})


def test_trials_at_once_counts_workers_scorers_and_data_reads():
    config = load_config(TuneConfig)  # trial 0.1 CPU, 0.25 CPU of Ray Data reads per trial
    scorers = {"llm": {"num_actors": 1, "cpus_per_actor": 0.5}}
    # 0.1 + max(0.5 + 0.25, 0.5) = 0.85 CPU per trial
    assert trials_at_once(config, _cpt(1, 0.5), scorers, {"CPU": 2}) == 2
    # scorers bigger than the trainer: 0.1 + 4 x 1 = 4.1
    assert trials_at_once(config, _cpt(1, 0.5), {"llm": {"num_actors": 4}}, {"CPU": 16}) == 3
    # GPUs bound it: 2 GPU workers per trial on 4 GPUs
    assert trials_at_once(config, _cpt(2, 1, gpu=True), scorers, {"CPU": 64, "GPU": 4}) == 2
    with pytest.raises(CPRecError, match="one tune trial needs 2.35 CPUs"):
        trials_at_once(config, _cpt(2, 1), scorers, {"CPU": 2})
    # An explicit cap is trusted (an autoscaling cluster grows into it).
    capped = load_config(TuneConfig, overrides=["max_concurrent_trials=3"])
    assert trials_at_once(capped, _cpt(2, 1), scorers, {"CPU": 2}) == 3


def _row(trial, w, s, a, objective, status="finished"):
    return {
        "trial": trial, "status": status, "warmup": w, "stable": s, "annealing": a, "shape": "cosine",
        "peak_lr": 1e-3, "step": 10, "val_loss": 3.0, "ndcg@10/A": objective, "objective": objective,
    }  # fmt: skip


def test_table_and_simplex_plot(tmp_path):
    rows = [
        _row("t0", 0.1, 0.6, 0.3, 0.20),
        _row("t1", 0.3, 0.2, 0.5, 0.25),
        _row("t2", 0.0, 1.0, 0.0, None, status="stopped early"),
    ]
    write_table(rows, ["A"], str(tmp_path))
    plot_simplex(rows, str(tmp_path / "simplex.png"))
    table = list(csv.DictReader((tmp_path / "trials.csv").open()))
    assert [r["trial"] for r in table] == ["t0", "t1", "t2"] and table[2]["objective"] == ""
    markdown = (tmp_path / "trials.md").read_text().splitlines()
    assert markdown[4].startswith("| t1 | finished | 0.3 | 0.2 | 0.5 |")  # best first
    assert markdown[6].startswith("| t2 | stopped early") and markdown[6].endswith("| – |")
    assert (tmp_path / "simplex.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_two_trial_tune_on_the_smoke_preset_resumes_without_rerunning(smoke_run, capsys):
    args = ["tune", "--preset", "smoke", f"world={HAND_WRITTEN_WORLD}", f"out_dir={smoke_run}", TWO_POINTS]
    args += ["cpt.steps=10", "report_every=5", "eval.max_users=8"]
    assert main(args) == 0
    out = capsys.readouterr().out
    # data, base and the downstream splits are the `cprec run` stages of the same preset, world and root.
    for stage in ("data", "base", "downstream"):
        assert f"[cprec run] {stage}: reusing" in out
    experiment = smoke_run / "tune"
    assert (experiment / "tuner.pkl").exists() and list(experiment.glob("experiment_state-*.json"))
    assert list(experiment.glob("*/events.out.tfevents.*")), "TensorBoard logs of the trials"

    rows = list(csv.DictReader((experiment / "trials.csv").open()))
    assert len(rows) == 2
    assert {(r["warmup"], r["stable"], r["annealing"]) for r in rows} == {
        ("0.1", "0.6", "0.3"),
        ("0.3", "0.2", "0.5"),
    }
    finished = [r for r in rows if r["status"] == "finished"]
    # ASHA may stop the worse trial at step 5; the first to reach that rung always goes on.
    assert finished and all(r["status"] in ("finished", "stopped early") for r in rows)
    assert all(0 <= float(r["objective"]) <= 1 and r["step"] == "10" for r in finished)
    best = max(finished, key=lambda r: float(r["objective"]))
    assert (experiment / "simplex.png").stat().st_size > 1000

    train = load_config(TrainConfig, experiment / "best_train.yaml")
    assert (train.schedule.warmup, train.schedule.stable, train.schedule.annealing) == (
        float(best["warmup"]), float(best["stable"]), float(best["annealing"]),
    )  # fmt: skip
    assert train.steps == 10 and train.model.endswith("/model") and train.data_dir.startswith(str(smoke_run))

    # Re-running restores the finished experiment: no trial trains or scores again.
    results = sorted(experiment.glob("work/*/eval/results.json"))
    stamps = [p.stat().st_mtime_ns for p in results]
    assert len(results) == len(finished)
    assert main(args) == 0
    assert f"resuming {experiment}" in capsys.readouterr().out
    assert [p.stat().st_mtime_ns for p in results] == stamps
    assert list(csv.DictReader((experiment / "trials.csv").open())) == rows

    # Another search space in the same experiment would mix two sweeps: refused.
    assert main([a if a != TWO_POINTS else "points=[[0.2,0.4,0.4]]" for a in args]) == 2
    assert "another search space" in capsys.readouterr().err
