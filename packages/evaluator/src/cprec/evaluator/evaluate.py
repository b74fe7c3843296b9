"""`evaluate(config)`: every method on every downstream dataset, the same users and candidates for all.

Per dataset: the split is prepared (datasets.py); each method is fitted on the training split and
scores the catalogue for the validation and the test targets; ranks become per-user metrics
(metrics.py). The baselines of every dataset do this first, side by side in Ray tasks
(`baseline_cpus` each), so a cluster runs them on its workers; then the LLM methods, in the driver,
which hands one model after another to the same scoring actors (the evaluator only scores: a
fine-tuned model is given, one per dataset). A method with several variants (the LLM's score forms)
is reported with the variant that is best on the validation `select_metric`. Methods are compared on the test split by a paired test
against the best method of each metric; means carry bootstrap confidence intervals. Progress goes
to stdout as `[cprec eval] ...` lines, one per dataset and method as each finishes.
Outputs in `out_dir`: datasets/, per_user/<dataset>.parquet, results.json, report.md, *.png.
"""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cprec.core import storage
from cprec.core.config import to_dict
from cprec.core.errors import CPRecError
from cprec.core.template import TEMPLATE_VERSION
from cprec.core.world import world_dir
from cprec.evaluator.config import DatasetConfig, EvalConfig
from cprec.evaluator.datasets import SplitDataset, dataset_specs, prepare_datasets
from cprec.evaluator.methods import Method, make_method
from cprec.evaluator.metrics import bootstrap_ci, count_ranks, metric_names, paired_pvalue, rank_metrics
from cprec.evaluator.results import (
    RESULTS_FILE,
    DatasetResult,
    MethodResult,
    Protocol,
    Results,
    Significance,
    method_identity,
)

SPLITS = ("valid", "test")


def evaluate(config: EvalConfig) -> Results:
    """Runs the evaluation; writes the record (`Results`) to `<out_dir>/results.json` and the report,
    and returns the record."""
    from cprec.evaluator.report import write_report

    specs = dataset_specs(config)
    names = [spec.name for spec in specs]
    for spec in config.methods:
        unknown = sorted(set(spec.datasets) - set(names))
        if unknown:
            raise CPRecError(f"method {spec.label()!r} names unknown datasets {unknown} (datasets: {names})")
    storage.check_disjoint(config.out_dir, input_paths(config, specs), "out_dir")
    progress(f"preparing {len(names)} datasets: {', '.join(names)}")
    started = time.perf_counter()
    datasets = prepare_datasets(config)
    progress(
        f"datasets ready in {time.perf_counter() - started:.0f}s: "
        + ", ".join(f"{d.name} ({d.n_users} users, {d.n_items} items)" for d in datasets)
    )
    results = Results(
        created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        template_version=TEMPLATE_VERSION,
        protocol=Protocol(
            kind=config.protocol,
            label=config.protocol_label(),
            negatives=config.negatives if config.protocol == "sampled" else None,
            mask_history=config.mask_history,
            ties=config.ties,
            ks=list(config.ks),
            select_metric=config.select_metric,
            test=config.test,
            alpha=config.alpha,
            bootstrap=config.bootstrap,
        ),
        config=to_dict(config),
    )
    methods = [make_method(spec, config) for spec in config.methods]
    shared: dict = {}  # what methods share across the evaluation: the LLM methods' scoring actors
    for method in methods:
        method.attach(shared)
    plans = [plan_dataset(dataset, config) for dataset in datasets]
    try:
        # Every baseline of every dataset first, side by side in Ray tasks; then the driver's methods,
        # one model after another on the same scoring actors, which hold the CPUs/GPUs till the end.
        runs = run_in_tasks(methods, plans, config) if config.baseline_cpus else {}
        for plan in plans:
            results.datasets[plan.dataset.name] = evaluate_dataset(plan, methods, runs, config)
    finally:
        for method in methods:
            method.close()
        for resource in shared.values():
            resource.close()
    results.save(storage.join(config.out_dir, RESULTS_FILE))
    write_report(results, config.out_dir)
    return results


def input_paths(config: EvalConfig, specs: list[DatasetConfig]) -> list[str]:
    """What the evaluation reads: the world's directory, the datasets' sources and the methods' models
    (a model that is no local path is a hub id, not a path)."""
    paths = [world_dir(config.world)] if config.world and not config.datasets else []
    paths += [path for spec in specs for path in (spec.source.path, spec.data_dir, spec.split_dir) if path]
    for method in config.methods:
        for model in dict.fromkeys([method.model, *method.models.values()]):
            if model and (not storage.is_local(model) or storage.local_path(model).exists()):
                paths.append(model)
    return paths


def progress(message: str) -> None:
    """One line on stdout as the evaluation goes (`ray job submit` streams it), like `[cprec run]`'s."""
    print(f"[cprec eval] {message}", flush=True)


@dataclass
class MethodRun:
    """A fitted method's per-user metrics: split -> variant -> metric -> values."""

    by_split: dict[str, dict[str, dict[str, np.ndarray]]]
    variants: list[str]
    info: dict
    seconds: dict[str, float]


def run_method(
    method: Method, dataset: SplitDataset, users: np.ndarray, candidates: dict, config: EvalConfig
) -> MethodRun:
    """Fits `method` and scores both splits: in the driver, or as a baseline's Ray task."""
    started = time.perf_counter()
    method.fit(dataset)
    fitted = time.perf_counter()
    by_split = {split: split_metrics(method, dataset, split, users, candidates[split], config) for split in SPLITS}
    seconds = {"fit": round(fitted - started, 2), "total": round(time.perf_counter() - started, 2)}
    return MethodRun(by_split, method.variants(), method.info(), seconds)


def run_in_tasks(
    methods: list[Method], plans: list[DatasetPlan], config: EvalConfig
) -> dict[tuple[str, str], MethodRun]:
    """The baselines (`runs_in_task`) of every dataset fit and score in Ray tasks, so a cluster runs them on
    its workers, not the driver's node; their lines are printed as each finishes. Keyed by (dataset, label)."""
    import ray
    from ray.exceptions import RayError, RayTaskError

    from cprec.core.raytools import init_ray

    baselines = [(plan, [m for m in methods_for(plan.dataset, methods) if m.runs_in_task]) for plan in plans]
    baselines = [(plan, in_tasks) for plan, in_tasks in baselines if in_tasks]
    if not baselines:
        return {}
    init_ray()
    task = ray.remote(run_method)
    pending = {}
    for plan, in_tasks in baselines:
        # One copy of the split and the candidates in the object store, read by every task.
        shared = [ray.put(value) for value in (plan.dataset, plan.users, plan.candidates)]
        for m in in_tasks:
            name = f"cprec eval {plan.dataset.name} / {m.spec.label()}"
            ref = task.options(name=name, **m.task_resources()).remote(m, *shared, config)
            pending[ref] = (plan.dataset.name, m.spec.label())
    labels = ", ".join(dict.fromkeys(m.spec.label() for _, in_tasks in baselines for m in in_tasks))
    progress(
        f"{len(pending)} baseline runs ({labels} on {len(baselines)} datasets) "
        f"as Ray tasks ({config.baseline_cpus:g} CPU each)"
    )
    runs = {}
    try:
        while pending:
            [ref], _ = ray.wait(list(pending))
            dataset, label = pending.pop(ref)
            try:
                runs[dataset, label] = ray.get(ref)
            except RayTaskError as exc:
                if isinstance(exc.cause, CPRecError):
                    raise exc.cause from None
                raise  # a bug: the remote traceback says where
            except RayError as exc:  # the worker died (out of memory, a lost node) and Ray's retries too
                raise CPRecError(f"{dataset} / {label}: {str(exc).strip().splitlines()[0]}") from exc
            progress_done(dataset, label, runs[dataset, label], config)
    finally:
        for ref in pending:  # a failed baseline fails the evaluation: the others' work is wasted
            ray.cancel(ref)
    return runs


def methods_for(dataset: SplitDataset, methods: list[Method]) -> list[Method]:
    return [m for m in methods if not m.spec.datasets or dataset.name in m.spec.datasets]


def chosen_variant(run: MethodRun, config: EvalConfig) -> str:
    return max(run.variants, key=lambda v: run.by_split["valid"][v][config.select_metric].mean())


def progress_done(dataset: str, label: str, run: MethodRun, config: EvalConfig) -> None:
    test = run.by_split["test"][chosen_variant(run, config)][config.select_metric].mean()
    progress(f"{dataset} / {label}: done in {run.seconds['total']:.0f}s, test {config.select_metric} {test:.3f}")


@dataclass
class DatasetPlan:
    """Who is evaluated on a dataset and against which candidates: the same for every method."""

    dataset: SplitDataset
    users: np.ndarray
    candidates: dict[str, np.ndarray | None]
    users_without_enough_negatives: int


def plan_dataset(dataset: SplitDataset, config: EvalConfig) -> DatasetPlan:
    users = evaluated_users(dataset, config)
    too_familiar = 0
    if config.protocol == "sampled":
        # A user who has had almost the whole catalogue has not enough never-seen items to sample from.
        keep = np.array(
            [dataset.n_items - len(known_items(dataset, u)) >= config.negatives for u in users], dtype=bool
        )
        users, too_familiar = users[keep], int((~keep).sum())
        if len(users) == 0:
            raise CPRecError(
                f"dataset {dataset.name!r}: no user has {config.negatives} never-seen items to sample as negatives"
            )
    ranked = dataset.n_items if config.protocol == "full" else config.negatives + 1
    if max(config.ks) > ranked:
        raise CPRecError(
            f"K={max(config.ks)} is larger than the {ranked} ranked items of dataset {dataset.name!r}; lower `ks`"
        )
    candidates = {split: sampled_candidates(dataset, split, users, config) for split in SPLITS}
    progress(f"{dataset.name}: {len(users)} of {dataset.n_users} users evaluated, {ranked} items ranked")
    return DatasetPlan(dataset, users, candidates, too_familiar)


def evaluate_dataset(
    plan: DatasetPlan, methods: list[Method], runs: dict[tuple[str, str], MethodRun], config: EvalConfig
) -> DatasetResult:
    """Every method's result on `plan`'s dataset: from `runs` (the baselines' tasks) or run here."""
    dataset, users, candidates = plan.dataset, plan.users, plan.candidates
    entry = DatasetResult(
        name=dataset.name,
        platform=dataset.platform,
        domain=dataset.domain,
        stats=dataset.stats,
        users_evaluated=len(users),
        users_without_enough_negatives=plan.users_without_enough_negatives,
    )
    per_user: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    for method in methods_for(dataset, methods):
        label = method.spec.label()
        run = runs.get((dataset.name, label))
        if run is None:
            progress(f"{dataset.name} / {label}: running")
            run = run_method(method, dataset, users, candidates, config)
            progress_done(dataset.name, label, run, config)
        by_split, variants, chosen = run.by_split, run.variants, chosen_variant(run, config)
        per_user[label] = {split: by_split[split][chosen] for split in SPLITS}
        spec = method.spec
        base, fine_tuned = method_identity(label, spec.kind, spec.base, spec.fine_tuned)
        entry.methods[label] = MethodResult(
            label=label,
            kind=spec.kind,
            base=base,
            fine_tuned=fine_tuned,
            variant=chosen,
            variant_selected_on="valid " + config.select_metric if len(variants) > 1 else "fixed",
            valid=_means(by_split["valid"][chosen]),
            test=_means(by_split["test"][chosen]),
            test_ci={
                name: bootstrap_ci(values, config.bootstrap, config.seed)
                for name, values in by_split["test"][chosen].items()
            },
            variants={v: {split: _means(by_split[split][v]) for split in SPLITS} for v in variants if v},
            info=run.info,
            seconds=run.seconds,
        )
        method.close()
    entry.significance = significance(per_user, config)
    write_per_user(config.out_dir, dataset, users, per_user)
    return entry


def evaluated_users(dataset: SplitDataset, config: EvalConfig) -> np.ndarray:
    if config.max_users and config.max_users < dataset.n_users:
        rng = np.random.default_rng(config.seed)
        return np.sort(rng.choice(dataset.n_users, config.max_users, replace=False))
    return np.arange(dataset.n_users)


def sampled_candidates(
    dataset: SplitDataset, split: str, users: np.ndarray, config: EvalConfig
) -> np.ndarray | None:
    """[users, 1 + negatives] item indices: the target, then negatives the user never interacted with."""
    if config.protocol == "full":
        return None
    rng = np.random.default_rng([config.seed, SPLITS.index(split)])
    out = np.empty((len(users), config.negatives + 1), dtype=np.int64)
    targets = dataset.targets(split)
    for row, user in enumerate(users):
        pool = np.setdiff1d(np.arange(dataset.n_items), known_items(dataset, user), assume_unique=True)
        out[row, 0] = targets[user]
        out[row, 1:] = rng.choice(pool, config.negatives, replace=False)
    return out


def known_items(dataset: SplitDataset, user: int) -> np.ndarray:
    return np.unique(np.append(dataset.history("test", user), dataset.test[user]))


def split_metrics(
    method: Method,
    dataset: SplitDataset,
    split: str,
    users: np.ndarray,
    candidates: np.ndarray | None,
    config: EvalConfig,
) -> dict[str, dict[str, np.ndarray]]:
    """Per variant, per metric: the per-user values on `split`."""
    counts: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    targets = dataset.targets(split)
    for start in range(0, len(users), config.user_chunk):
        chunk = users[start : start + config.user_chunk]
        allowed = None
        if candidates is not None:
            allowed = np.zeros((len(chunk), dataset.n_items), dtype=bool)
            np.put_along_axis(allowed, candidates[start : start + len(chunk)], True, axis=1)
        excluded = None
        if config.mask_history:
            excluded = np.zeros((len(chunk), dataset.n_items), dtype=bool)
            for row, user in enumerate(chunk):
                excluded[row, dataset.history(split, int(user))] = True
        for variant, scores in method.score(dataset, split, chunk, allowed).items():
            counts.setdefault(variant, []).append(count_ranks(scores, targets[chunk], excluded, allowed))
    out = {}
    for variant, parts in counts.items():
        greater = np.concatenate([p[0] for p in parts])
        ties = np.concatenate([p[1] for p in parts])
        out[variant] = rank_metrics(greater, ties, list(config.ks), config.ties)
    return out


def significance(per_user: dict, config: EvalConfig) -> dict[str, Significance]:
    """Per test metric: the best method and the paired-test p-value of every other method against it."""
    out: dict[str, Significance] = {}
    labels = list(per_user)
    if not labels:  # every method is restricted to other datasets
        return out
    for name in metric_names(list(config.ks)):
        means = {label: per_user[label]["test"][name].mean() for label in labels}
        best = max(labels, key=lambda label: means[label])
        p_values = {
            label: paired_pvalue(per_user[best]["test"][name], per_user[label]["test"][name], config.test)
            for label in labels
            if label != best
        }
        out[name] = Significance(best, p_values)
    return out


def write_per_user(out_dir: str, dataset: SplitDataset, users: np.ndarray, per_user: dict) -> None:
    columns: dict[str, list] = {"method": [], "split": [], "user_id": []}
    user_ids = [dataset.user_ids[u] for u in users]
    for label, splits in per_user.items():
        for split, metrics in splits.items():
            columns["method"] += [label] * len(users)
            columns["split"] += [split] * len(users)
            columns["user_id"] += user_ids
            for name, values in metrics.items():
                columns.setdefault(name, []).extend(values.tolist())
    fs, path = storage.filesystem(storage.join(out_dir, "per_user"))
    fs.create_dir(path, recursive=True)
    pq.write_table(pa.table(columns), f"{path}/{dataset.name}.parquet", filesystem=fs)


def _means(metrics: dict[str, np.ndarray]) -> dict[str, float]:
    return {name: float(values.mean()) for name, values in metrics.items()}
