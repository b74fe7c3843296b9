"""The paper's four claims, checked over several seeds of `cprec run` (docs/results.md).

Each claim is a set of paired comparisons on the test split (NDCG@10 by default): per dataset,
the per-user values of every seed are pooled (a user of seed s is a different sample from the same
user of seed t) and compared with the evaluator's paired test; the per-seed differences of the
means show whether the direction is stable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow.parquet as pq

from cprec.core import storage

METRIC = "ndcg@10"


@dataclass(frozen=True)
class Comparison:
    claim: str
    better: str
    other: str
    # "better": significantly above; "not_worse": not significantly below (claim 4's "at least as good")
    kind: str = "better"


CLAIMS = [
    *[
        Comparison("1. CPRec + SFT beats the fine-tuned base and the baselines", "CPRec + SFT", other)
        for other in ("Base + SFT", "SASRec", "Popularity", "Content (TF-IDF)")
    ],
    Comparison("2. CPRec zero-shot beats the base and the format control", "CPRec zero-shot", "Base zero-shot"),
    Comparison("2. CPRec zero-shot beats the base and the format control", "CPRec zero-shot", "Format control zero-shot"),
    Comparison("3. all-domain mixed sequences beat domain-only", "CPRec zero-shot", "CPT domain-only zero-shot"),
    Comparison("3. all-domain mixed sequences beat domain-only", "CPRec + SFT", "CPT domain-only + SFT"),
    Comparison("4. WSA at least as good as cosine, better than constant", "CPRec zero-shot", "CPT cosine zero-shot",
               "not_worse"),
    Comparison("4. WSA at least as good as cosine, better than constant", "CPRec zero-shot", "CPT constant zero-shot"),
]


def per_user(root: str) -> dict:
    """dataset -> DataFrame of test-split per-user metrics (rows users, columns methods) of one run."""
    return eval_per_user(storage.read_json(storage.join(root, "run.json"))["stages"]["eval"]["path"])


def eval_per_user(eval_dir: str) -> dict:
    """`per_user` of one evaluation's output directory."""
    frames = {}
    for file in storage.list_files(storage.join(eval_dir, "per_user"), (".parquet",)):
        file_fs, file_path = storage.filesystem(file)
        table = pq.read_table(file_path, filesystem=file_fs).to_pandas()
        test = table[table["split"] == "test"]
        frames[file.rsplit("/", 1)[-1].removesuffix(".parquet")] = test.pivot(
            index="user_id", columns="method", values=METRIC
        )
    return frames


def check(roots: dict[int, str], alpha: float = 0.05, test: str = "wilcoxon") -> list[dict]:
    """One row per (comparison, dataset): means, per-seed differences, pooled p-value, verdict."""
    return compare({seed: per_user(root) for seed, root in roots.items()}, CLAIMS, alpha, test)


def compare(
    runs: dict[int, dict], comparisons: list[Comparison], alpha: float = 0.05, test: str = "wilcoxon"
) -> list[dict]:
    """`check` over per-user frames (seed -> `per_user`'s dict) for any comparisons."""
    from cprec.evaluator.metrics import paired_pvalue

    datasets = sorted(set.intersection(*[set(r) for r in runs.values()]))
    rows = []
    for comparison in comparisons:
        for dataset in datasets:
            frames = [runs[seed][dataset] for seed in runs]
            if not all({comparison.better, comparison.other} <= set(f.columns) for f in frames):
                continue
            a = np.concatenate([f[comparison.better].to_numpy(float) for f in frames])
            b = np.concatenate([f[comparison.other].to_numpy(float) for f in frames])
            diffs = [float(f[comparison.better].mean() - f[comparison.other].mean()) for f in frames]
            p = paired_pvalue(a, b, test)
            if comparison.kind == "better":
                holds = a.mean() > b.mean() and p < alpha
            else:
                holds = not (a.mean() < b.mean() and p < alpha)
            rows.append(
                {
                    "claim": comparison.claim,
                    "better": comparison.better,
                    "other": comparison.other,
                    "dataset": dataset,
                    "mean_better": float(a.mean()),
                    "mean_other": float(b.mean()),
                    "seed_differences": diffs,
                    "p": float(p),
                    "holds": bool(holds),
                }
            )
    return rows


def markdown(rows: list[dict], seeds: list[int]) -> str:
    lines = [f"Seeds {seeds}; test {METRIC.upper()}; pooled paired test over users of all seeds.", ""]
    for claim in dict.fromkeys(r["claim"] for r in rows):
        claim_rows = [r for r in rows if r["claim"] == claim]
        held = sum(r["holds"] for r in claim_rows)
        lines += [
            f"### {claim} — holds in {held} of {len(claim_rows)} comparisons",
            "",
            "| dataset | comparison | mean | other | difference per seed | p | holds |",
            "| --- | --- | ---: | ---: | --- | ---: | --- |",
        ]
        for r in claim_rows:
            seeds_text = ", ".join(f"{d:+.4f}" for d in r["seed_differences"])
            lines.append(
                f"| {r['dataset']} | {r['better']} vs {r['other']} | {r['mean_better']:.4f} | {r['mean_other']:.4f} "
                f"| {seeds_text} | {r['p']:.3g} | {'yes' if r['holds'] else '**no**'} |"
            )
        lines.append("")
    return "\n".join(lines)
