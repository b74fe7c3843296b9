"""Claim 3 as the pre-training budget grows: CPRec (mixed sequences) against domain-only sequences.

For each seed of a finished `benchmarks/claims.py` sweep and each step budget, trains CPRec and the
domain-only ablation from that seed's base model for `steps` steps (the preset's schedules and
mixtures; every step trains on the same number of packed blocks, so the tokens are equal too), then
scores both zero-shot with `benchmarks/context_prompts.py` (the protocol's single-domain prompts)
on validation and test, `--users` per dataset. The score form is chosen per (seed, dataset, model)
on validation; on test the users of all seeds are pooled into one paired Wilcoxon test per dataset.
With `--sft`, both models are also fine-tuned by the pipeline's own stages (the run's downstream
splits and `sft` section: its datasets, epochs and training options) and scored by the evaluator
itself (`cprec eval`'s protocol, `--users` per dataset): claim 3 after SFT.

    python benchmarks/claim3_budget.py --sweep runs/claims4 --seeds 0 1 2 --steps 150 300 600

Each (steps, seed) is its own run root under --root whose stage directories are links to the
sweep's (stages are content-addressed: its world, corpus, base model, evaluation datasets and, at
the preset's own step count, both models are reused, not rebuilt); an interrupted study continues.
Writes <root>/claim3_budget.md and .json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

from cprec.core.cli import main as cprec
from cprec.core.config import layered, load_config
from cprec.evaluator.config import FORMS
from cprec.evaluator.metrics import paired_pvalue
from cprec.evaluator.results import RESULTS_FILE, MethodKey
from cprec.pipeline import recipe
from cprec.pipeline.claims import CPREC_SFT, Comparison, EvalRun, compare, eval_per_user
from cprec.pipeline.config import RunConfig
from cprec.pipeline.presets import load_preset

DOMAIN_ONLY = "CPT domain-only"
MODELS = {"CPRec": "cpt", DOMAIN_ONLY: "variant-cpt-domain-only"}  # label -> stage
SPLITS = ("valid", "test")


def run_config(root: Path, preset: str, seed: int, steps: int, overrides: list[str]) -> tuple[Path, list[str]]:
    """The `cprec run` layers of one (steps, seed) root: its --config file (the domain-only variant)
    and its key=value overrides; `train_pair` runs them and `fine_tuned` reads the same config."""
    variants = [v for v in load_preset(preset).get("variants", []) if v["name"] == DOMAIN_ONLY]
    config = root / "claim3.yaml"
    config.write_text(yaml.safe_dump({"variants": variants}))
    return config, [f"out_dir={root.absolute()}", f"seed={seed}", "until=cpt", f"cpt.steps={steps}", *overrides]


def train_pair(sweep_run: Path, root: Path, preset: str, seed: int, steps: int, overrides: list[str]) -> dict:
    """Trains (or reuses) CPRec and the domain-only model at `steps`; returns label -> stage dir."""
    root.mkdir(parents=True, exist_ok=True)
    for stage in sweep_run.iterdir():
        link = root / stage.name
        if stage.is_dir() and not link.exists():
            link.symlink_to(stage.absolute())
    config, options = run_config(root, preset, seed, steps, overrides)
    if cprec(["run", "--preset", preset, "--config", str(config), *options]) != 0:
        raise SystemExit(f"cprec run failed for seed {seed}, {steps} steps")
    stages = json.loads((root / "run.json").read_text())["stages"]
    return {label: Path(stages[stage]["path"]) for label, stage in MODELS.items()}


def score(root: Path, models: dict, users: int) -> dict:
    """split -> dataset -> 'label | domain | form' -> per-user NDCG@10 (context_prompts.py's file)."""
    out = {}
    for split in SPLITS:
        path = root / f"context_prompts-{split}.json"
        if not path.exists():
            script = Path(__file__).with_name("context_prompts.py")
            args = [sys.executable, str(script), str(root), "--kinds", "domain", "--split", split]
            args += ["--users", str(users)]
            for label, stage in models.items():
                args += ["--model", f"{label}={stage / 'model'}"]
            subprocess.run(args, check=True)
        out[split] = json.loads(path.read_text())
    return out


def fine_tuned(
    root: Path, preset: str, seed: int, steps: int, models: dict, users: int, overrides: list[str]
) -> EvalRun:
    """Both models fine-tuned on each of the run's SFT datasets by the pipeline's own stages (the
    downstream splits, the SFT data and the fine-tunings, in `root` beside the run's other stages, so
    the sweep's fine-tunings of the same model are reused), then scored by the evaluator
    (<root>/eval-sft, `eval.max_users=users`)."""
    from cprec.core import storage
    from cprec.evaluator.evaluate import evaluate

    out = root / "eval-sft"
    if not (out / RESULTS_FILE).exists():
        config_file, options = run_config(root, preset, seed, steps, overrides)
        config = load_config(RunConfig, path=config_file, overrides=options, base=load_preset(preset))
        run_root = storage.absolute(config.out_dir)
        runner, world_json = recipe.world_stage(run_root, config.world, recipe.seeded(config, config.synth))
        datasets = recipe.downstream_stage(runner, config, world_json)
        targets = recipe.sft_targets(config.sft, [d["name"] for d in datasets])
        datasets = [d for d in datasets if d["name"] in targets]
        data_dir = json.loads((root / "run.json").read_text())["stages"]["data"]["path"]
        tuned = recipe.sft_stages(
            runner,
            config,
            {label: str(models[label] / "model") for label in MODELS},
            datasets,
            data_dir,
        )
        methods = [
            {
                "kind": "llm",
                "name": f"{label} + SFT",
                "models": tuned[label],
                "datasets": targets,
                "base": label,
                "fine_tuned": True,
            }
            for label in MODELS
        ]
        scoring = dataclasses.replace(config, eval=layered(config.eval, {"max_users": users}))
        evaluate(recipe.eval_config(scoring, datasets, methods, str(out.absolute())))
    return eval_per_user(str(out))


def best_on_valid(scores: dict, dataset: str, label: str) -> np.ndarray:
    """Test NDCG@10 of the model's score form that is best on validation."""
    form = max(FORMS, key=lambda f: np.mean(scores["valid"][dataset][f"{label} | domain | {f}"]))
    return np.array(scores["test"][dataset][f"{label} | domain | {form}"])


def tokens_seen(stage: Path) -> int:
    lines = (stage / "metrics.jsonl").read_text().splitlines()
    return json.loads(lines[-1])["tokens_seen"]


def summarise(per_seed: dict[int, dict], models_by_seed: dict[int, dict]) -> dict:
    first = next(iter(per_seed.values()))
    rows = {}
    for dataset in first["test"]:
        values = {label: {s: best_on_valid(per_seed[s], dataset, label) for s in per_seed} for label in MODELS}
        cprec_all = np.concatenate(list(values["CPRec"].values()))
        domain_all = np.concatenate(list(values[DOMAIN_ONLY].values()))
        rows[dataset] = {
            "CPRec": float(cprec_all.mean()),
            DOMAIN_ONLY: float(domain_all.mean()),
            "p": paired_pvalue(cprec_all, domain_all),
            "per_seed_diff": {s: float(values["CPRec"][s].mean() - values[DOMAIN_ONLY][s].mean()) for s in per_seed},
        }
    tokens = {label: {s: tokens_seen(models[label]) for s, models in models_by_seed.items()} for label in MODELS}
    return {"datasets": rows, "tokens_seen": tokens}


def sft_rows(runs_by_seed: dict[int, EvalRun]) -> list[dict]:
    claim = "3. all-domain mixed sequences beat domain-only, after SFT"
    return compare(runs_by_seed, [Comparison(claim, CPREC_SFT, MethodKey(DOMAIN_ONLY, fine_tuned=True))])


def table_row(steps: int, dataset: str, mean: float, other: float, p: float, seed_diffs, alpha: float) -> str:
    """One dataset's row: both means, the difference (bold when p < alpha), p, per-seed signs."""
    signs = "".join("+" if d > 0 else "-" if d < 0 else "0" for d in seed_diffs)
    mark = "**" if p < alpha else ""
    return f"| {steps} | {dataset} | {mean:.3f} | {other:.3f} | {mark}{mean - other:+.3f}{mark} | {p:.3g} | {signs} |"


def markdown(results: dict, alpha: float = 0.05) -> str:
    lines = [
        "| steps | dataset | CPRec | CPT domain-only | difference | p (pooled) | per-seed sign |",
        "| ---: | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for steps, summary in results.items():
        rows = summary["datasets"]
        for dataset, row in rows.items():
            diffs = row["per_seed_diff"].values()
            lines.append(table_row(steps, dataset, row["CPRec"], row[DOMAIN_ONLY], row["p"], diffs, alpha))
        cprec_mean = np.mean([r["CPRec"] for r in rows.values()])
        domain_mean = np.mean([r[DOMAIN_ONLY] for r in rows.values()])
        ahead = sum(r["CPRec"] > r[DOMAIN_ONLY] for r in rows.values())
        held = sum(r["CPRec"] > r[DOMAIN_ONLY] and r["p"] < alpha for r in rows.values())
        behind = sum(r["CPRec"] < r[DOMAIN_ONLY] and r["p"] < alpha for r in rows.values())
        lines.append(
            f"| {steps} | **mean** (ahead {ahead}/{len(rows)}, significantly {held}, significantly behind "
            f"{behind}) | {cprec_mean:.3f} | {domain_mean:.3f} | {cprec_mean - domain_mean:+.3f} | | |"
        )
    sft = {steps: summary["sft"] for steps, summary in results.items() if summary.get("sft")}
    if sft:
        lines += ["", "After fine-tuning (the evaluator's protocol and users):", ""]
        lines += [
            "| steps | dataset | CPRec + SFT | CPT domain-only + SFT | difference | p (pooled) | per-seed sign |",
            "| ---: | --- | ---: | ---: | ---: | ---: | --- |",
        ]
        for steps, rows in sft.items():
            for row in rows:
                means = (row["mean_better"], row["mean_other"], row["p"], row["seed_differences"])
                lines.append(table_row(steps, row["dataset"], *means, alpha))
    lines += ["", "Real tokens trained on (`tokens_seen`, per seed):", ""]
    for steps, summary in results.items():
        parts = [
            f"{label} {', '.join(f'{t:,}' for t in seeds.values())}" for label, seeds in summary["tokens_seen"].items()
        ]
        lines.append(f"- {steps} steps: " + "; ".join(parts))
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sweep", type=Path, required=True, help="a benchmarks/claims.py root (its seed runs)")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, nargs="+", default=[150, 300, 600])
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--root", type=Path, default=Path("runs/claim3-budget"))
    parser.add_argument("--sft", action="store_true", help="also compare both models after fine-tuning")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the `cprec run` config")
    args = parser.parse_args()
    results = {}
    for steps in args.steps:
        per_seed, models_by_seed, tuned = {}, {}, {}
        for seed in args.seeds:
            root = args.root / f"steps{steps}-seed{seed}"
            sweep_run = args.sweep / f"{args.preset}-seed{seed}"
            models_by_seed[seed] = train_pair(sweep_run, root, args.preset, seed, steps, args.overrides)
            per_seed[seed] = score(root, models_by_seed[seed], args.users)
            if args.sft:
                tuned[seed] = fine_tuned(
                    root, args.preset, seed, steps, models_by_seed[seed], args.users, args.overrides
                )
        results[steps] = summarise(per_seed, models_by_seed)
        if tuned:
            results[steps]["sft"] = sft_rows(tuned)
    (args.root / "claim3_budget.json").write_text(json.dumps(results, indent=2))
    (args.root / "claim3_budget.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
