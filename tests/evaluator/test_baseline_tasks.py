"""The baselines fit and score in Ray tasks, not in the driver, with the driver's results; `cprec eval`
prints a progress line per dataset and method as it goes."""

from __future__ import annotations

import dataclasses
import re
import sys

import pytest
from eval_fixtures import catalogue, write_data_dir

from cprec.core.config import load_config
from cprec.core.errors import CPRecError
from cprec.evaluator import evaluate as evaluate_module
from cprec.evaluator.config import EvalConfig
from cprec.evaluator.datasets import prepare_datasets
from cprec.evaluator.evaluate import evaluate, plan_dataset, run_in_tasks
from cprec.evaluator.methods.content import ContentTfidf
from cprec.evaluator.methods.popularity import Popularity
from cprec.evaluator.methods.sasrec import SASRecMethod
from cprec.evaluator.results import Results

BASELINES = [{"kind": "popularity"}, {"kind": "content"}, {"kind": "sasrec"}]


def eval_config(tmp_path, methods, **extra) -> dict:
    events = [(f"u{u}", f"GA{(u * 5 + k * 3) % 20:04d}", k) for u in range(16) for k in range(6)]
    data = write_data_dir(tmp_path / "garden", "Garden", catalogue("Garden", 20), events)
    return {
        "out_dir": str(tmp_path / "eval"),
        "datasets": [{"name": name, "data_dir": str(data)} for name in ("garden", "garden-copy")],
        "bootstrap": 20,
        "ks": [5, 10],
        "methods": methods,
        "sasrec": {"hidden": 16, "max_len": 8, "epochs": 2, "eval_every": 1},
        **extra,
    }


def methods_without_timings(results: Results) -> dict:
    return {
        name: {label: dataclasses.replace(method, seconds={}) for label, method in d.methods.items()}
        for name, d in results.datasets.items()
    }


def test_baselines_fit_in_ray_tasks_with_the_driver_s_results(tmp_path, ray_local, monkeypatch):
    def in_the_driver(self, dataset):
        raise AssertionError(f"{type(self).__name__} was fitted in the driver")

    # Ray workers import the methods afresh: only a fit in this process meets the patch.
    with monkeypatch.context() as patch:
        for cls in (Popularity, ContentTfidf, SASRecMethod):
            patch.setattr(cls, "fit", in_the_driver)
        in_tasks = evaluate(load_config(EvalConfig, base=eval_config(tmp_path / "tasks", BASELINES)))
    in_driver = evaluate(load_config(EvalConfig, base=eval_config(tmp_path / "driver", BASELINES, baseline_cpus=0)))
    assert set(in_tasks.datasets["garden"].methods) == {"popularity", "content", "sasrec"}
    assert methods_without_timings(in_tasks) == methods_without_timings(in_driver)


def test_progress_lines_per_dataset_and_method_as_they_finish(tmp_path, ray_local, tiny_lm, monkeypatch, capsys):
    methods = [*BASELINES[:2], {"kind": "llm", "name": "lm", "model": str(tiny_lm)}]
    config = load_config(EvalConfig, base=eval_config(tmp_path, methods, max_users=6, llm={"num_actors": 0}))
    printed = []  # stdout so far, each time a dataset's methods are all done
    significance = evaluate_module.significance

    def spy(per_user, config):
        printed.append(capsys.readouterr().out)
        return significance(per_user, config)

    monkeypatch.setattr(evaluate_module, "significance", spy)
    evaluate(config)
    first, second = printed
    assert "[cprec eval] datasets ready in " in first and "garden (16 users, 20 items)" in first
    assert "[cprec eval] garden: 6 of 16 users evaluated, 20 items ranked" in first
    # every dataset's baselines first, side by side; then the LLM method dataset by dataset
    assert "[cprec eval] 4 baseline runs (popularity, content on 2 datasets) as Ray tasks (1 CPU each)" in first
    llm_starts = first.index("[cprec eval] garden / lm: running")
    for name in ("garden", "garden-copy"):
        for label in ("popularity", "content"):
            done = re.search(rf"^\[cprec eval\] {name} / {label}: done in \d+s, test ndcg@10 \d\.\d{{3}}$", first, re.M)
            assert done and done.start() < llm_starts
    for name, out in (("garden", first), ("garden-copy", second)):
        assert f"[cprec eval] {name} / lm: running" in out
        assert re.search(rf"^\[cprec eval\] {name} / lm: done in \d+s, test ndcg@10 \d\.\d{{3}}$", out, re.M)
    assert "[cprec eval] garden-copy / lm" not in first  # the first dataset's result came before the second's


def test_a_failed_task_is_its_one_line_cprec_error(tmp_path, ray_local):
    import ray

    config = load_config(EvalConfig, base=eval_config(tmp_path, BASELINES[:1]))
    dataset = prepare_datasets(config)[0]
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Failing is not importable by workers
    try:
        with pytest.raises(CPRecError) as caught:
            run_in_tasks([Failing(config.methods[0], config)], [plan_dataset(dataset, config)], config)
    finally:
        ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert type(caught.value) is CPRecError and str(caught.value) == "no luck on garden"


class Failing(Popularity):
    def fit(self, dataset):
        raise CPRecError(f"no luck on {dataset.name}")


def test_baseline_cpus_is_checked():
    with pytest.raises(CPRecError, match="baseline_cpus must be >= 0"):
        load_config(EvalConfig, base={"world": "w.json", "baseline_cpus": -1})
