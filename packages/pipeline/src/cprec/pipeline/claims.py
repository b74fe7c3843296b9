"""The paper's four claims, checked over several seeds of `cprec run` (docs/results.md).

Each claim is a set of paired comparisons on the test split (NDCG@10 by default): per dataset,
the per-user values of every seed are pooled (a user of seed s is a different sample from the same
user of seed t) and compared with the evaluator's paired test; the per-seed differences of the
means show whether the direction is stable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from cprec.core import storage
from cprec.evaluator.results import RESULTS_FILE, MethodKey, Results
from cprec.pipeline.recipe import BASE_NAME, CPREC_NAME

METRIC = "ndcg@10"
CPREC_ZERO_SHOT = MethodKey(CPREC_NAME)
CPREC_SFT = MethodKey(CPREC_NAME, fine_tuned=True)


@dataclass(frozen=True)
class Comparison:
    claim: str
    better: MethodKey
    other: MethodKey
    # "better": significantly above; "not_worse": not significantly below (claim 4's "at least as good")
    kind: str = "better"


CLAIMS = [
    *[
        Comparison("1. CPRec + SFT beats the fine-tuned base and the baselines", CPREC_SFT, other)
        for other in (
            MethodKey(BASE_NAME, fine_tuned=True),
            MethodKey(kind="sasrec"),
            MethodKey(kind="popularity"),
            MethodKey(kind="content"),
        )
    ],
    Comparison("2. CPRec zero-shot beats the base and the format control", CPREC_ZERO_SHOT, MethodKey(BASE_NAME)),
    Comparison(
        "2. CPRec zero-shot beats the base and the format control", CPREC_ZERO_SHOT, MethodKey("Format control")
    ),
    Comparison("3. all-domain mixed sequences beat domain-only", CPREC_ZERO_SHOT, MethodKey("CPT domain-only")),
    Comparison(
        "3. all-domain mixed sequences beat domain-only", CPREC_SFT, MethodKey("CPT domain-only", fine_tuned=True)
    ),
    Comparison(
        "4. WSA at least as good as cosine, better than constant",
        CPREC_ZERO_SHOT,
        MethodKey("CPT cosine"),
        "not_worse",
    ),
    Comparison("4. WSA at least as good as cosine, better than constant", CPREC_ZERO_SHOT, MethodKey("CPT constant")),
]


@dataclass
class EvalRun:
    """One evaluation: its record, and its test-split per-user METRIC per dataset (users x method labels)."""

    results: Results
    frames: dict[str, pd.DataFrame]

    def values(self, dataset: str, key: MethodKey) -> pd.Series | None:
        """The per-user values of the method that is `key`; None where it did not run on `dataset`."""
        method = self.results.method(dataset, key)
        frame = self.frames.get(dataset)
        if method is None or frame is None or method.label not in frame.columns:
            return None
        return frame[method.label]


def per_user(root: str) -> EvalRun:
    """`eval_per_user` of one `cprec run` root's evaluation."""
    return eval_per_user(storage.read_json(storage.join(root, "run.json"))["stages"]["eval"]["path"])


def eval_per_user(eval_dir: str) -> EvalRun:
    """The record and per-user test metrics of one evaluation's output directory."""
    frames = {}
    for file in storage.list_files(storage.join(eval_dir, "per_user"), (".parquet",)):
        file_fs, file_path = storage.filesystem(file)
        table = pq.read_table(file_path, filesystem=file_fs).to_pandas()
        test = table[table["split"] == "test"]
        frames[file.rsplit("/", 1)[-1].removesuffix(".parquet")] = test.pivot(
            index="user_id", columns="method", values=METRIC
        )
    return EvalRun(Results.load(storage.join(eval_dir, RESULTS_FILE)), frames)


def check(roots: dict[int, str], alpha: float = 0.05, test: str = "wilcoxon") -> list[dict]:
    """One row per (comparison, dataset): means, per-seed differences, pooled p-value, verdict."""
    return compare({seed: per_user(root) for seed, root in roots.items()}, CLAIMS, alpha, test)


def compare(
    runs: dict[int, EvalRun], comparisons: list[Comparison], alpha: float = 0.05, test: str = "wilcoxon"
) -> list[dict]:
    """`check` over evaluations (seed -> `per_user`) for any comparisons; a comparison is left out
    on a dataset where either method is missing from some seed. Rows name the methods by the first
    seed's labels."""
    from cprec.evaluator.metrics import paired_pvalue

    datasets = sorted(set.intersection(*[set(run.frames) for run in runs.values()]))
    first = next(iter(runs.values()))
    rows = []
    for comparison in comparisons:
        for dataset in datasets:
            pairs = [
                (run.values(dataset, comparison.better), run.values(dataset, comparison.other)) for run in runs.values()
            ]
            if any(better is None or other is None for better, other in pairs):
                continue
            a = np.concatenate([better.to_numpy(float) for better, _ in pairs])
            b = np.concatenate([other.to_numpy(float) for _, other in pairs])
            diffs = [float(better.mean() - other.mean()) for better, other in pairs]
            p = paired_pvalue(a, b, test)
            if comparison.kind == "better":
                holds = a.mean() > b.mean() and p < alpha
            else:
                holds = not (a.mean() < b.mean() and p < alpha)
            rows.append(
                {
                    "claim": comparison.claim,
                    "better": first.results.method(dataset, comparison.better).label,
                    "other": first.results.method(dataset, comparison.other).label,
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
