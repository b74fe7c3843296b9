"""Claim 3's untried lever: downstream prompts that carry a user's other domains.

docs/design.md §4 fixes the downstream prompt as the user's domain-specific history, which never shows
what only all-domain mixed pre-training teaches (a choice in one domain shaping the next in
another). The marketplace downstream users are pre-training users, so their pre-training events
before a target can be interleaved with their downstream history as an all-domain document
("History across all domains:"). This scores both prompt kinds, zero-shot, with a finished
`cprec run`'s CPRec and domain-only models, on the validation split (choices are made there),
every score form, and prints per-dataset NDCG@10 with the paired p-value of CPRec against
domain-only for the prompt kind each model does best with.

    python benchmarks/context_prompts.py runs/claims4/default-seed0 [--users 100] [--history 20]

Writes <run>/context_prompts-<split>.json (per-user NDCG@10 of every model, prompt kind and form).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from cprec.core.template import MIXED_DOMAIN, document, header
from cprec.evaluator.config import FORMS, LLMConfig
from cprec.evaluator.methods.llm import PrefixScorer, end_token_ids, score_forms, tokenize_catalogue
from cprec.evaluator.metrics import count_ranks, paired_pvalue, rank_metrics

MODELS = {"CPRec": "cpt-*", "CPT domain-only": "variant-cpt-domain-only-*"}


def one(run: Path, pattern: str) -> Path:
    found = sorted(run.glob(pattern))
    if len(found) != 1:
        raise SystemExit(f"{run}: expected one {pattern}, found {len(found)}")
    return found[0]


def user_cases(dataset_dir: Path, other: dict, users: int, history: int, split: str) -> dict:
    """Per sampled user: the target, the masked items, and both prompts' item texts."""
    events = pd.read_parquet(dataset_dir / "interactions.parquet").sort_values(["user_id", "timestamp"])
    items = pd.read_parquet(dataset_dir / "items.parquet").sort_values("item_index")
    texts = items["text"].tolist()
    user_ids = np.array(sorted(events["user_id"].unique()))
    chosen = np.random.default_rng(0).permutation(user_ids)[:users]
    visible = {"valid": ["train"], "test": ["train", "valid"]}[split]
    cases = {"target": [], "seen": [], "domain": [], "mixed": [], "has_context": []}
    for user, rows in events[events["user_id"].isin(chosen)].groupby("user_id"):
        target = rows[rows["split"] == split].iloc[0]
        seen = rows[rows["split"].isin(visible)]
        own = list(zip(seen["timestamp"], (texts[i] for i in seen["item_index"])))
        before = [(t, x) for t, x in other.get(user, []) if t < target["timestamp"]]
        cases["target"].append(int(target["item_index"]))
        cases["seen"].append(seen["item_index"].to_numpy())
        cases["domain"].append([x for _, x in own][-history:])
        cases["mixed"].append([x for _, x in sorted(own + before)][-history:])
        cases["has_context"].append(bool(before))
    return {"texts": texts, "domain_name": items["domain"].iloc[0], **cases}


def ndcg10(scores: np.ndarray, cases: dict) -> np.ndarray:
    excluded = np.zeros(scores.shape, dtype=bool)
    for row, seen in enumerate(cases["seen"]):
        excluded[row, seen] = True
    greater, ties = count_ranks(scores, np.array(cases["target"]), excluded)
    return rank_metrics(greater, ties, [10])["ndcg@10"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a finished `cprec run` directory (one seed)")
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--history", type=int, default=20, help="items in either prompt (the preset's llm.max_history)")
    parser.add_argument("--split", default="valid", choices=["valid", "test"])
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="LABEL=PATH",
        help="models to compare instead of the run's CPRec and CPT domain-only (the first two are tested)",
    )
    parser.add_argument("--kinds", nargs="+", default=["domain", "mixed"], choices=["domain", "mixed"])
    args = parser.parse_args()

    evaluation, data = one(args.run, "eval-*"), one(args.run, "data-*")
    models = dict(m.split("=", 1) for m in args.model) or {
        label: str(one(args.run, pattern) / "model") for label, pattern in MODELS.items()
    }
    pretraining = pd.read_parquet(data / "interactions")
    texts = pd.read_parquet(data / "items.parquet").set_index("item_id")["text"]
    pretraining["text"] = pretraining["item_id"].map(texts)
    other = {
        user: list(zip(rows["timestamp"], rows["text"]))
        for user, rows in pretraining.sort_values("timestamp").groupby("user_id")
    }
    results: dict = {}
    for dataset_dir in sorted((evaluation / "datasets").iterdir()):
        cases = user_cases(dataset_dir, other, args.users, args.history, args.split)
        results[dataset_dir.name] = per_model = {"has_context": cases["has_context"]}
        for label, path in models.items():
            scorer = PrefixScorer(path, LLMConfig())
            catalogue = tokenize_catalogue(scorer.tokenizer, cases["texts"])
            scorer.set_catalogue(catalogue, end_token_ids(scorer.tokenizer, catalogue, "item_end"))
            for kind in args.kinds:
                domain = cases["domain_name"] if kind == "domain" else MIXED_DOMAIN
                sums = scorer.score_prompts([document(kind, domain, h) for h in cases[kind]])
                prior = scorer.score_prompts([header(kind, domain)])[0]  # the empty prompt of that kind
                for form, scores in score_forms(sums, scorer.token_counts(), prior, list(FORMS)).items():
                    per_model[f"{label} | {kind} | {form}"] = ndcg10(scores, cases).tolist()
    (args.run / f"context_prompts-{args.split}.json").write_text(json.dumps(results))

    print(
        "dataset | users with other domains | "
        + " | ".join(f"{m} {k}" for m in models for k in args.kinds)
        + " | p (best vs best)"
    )
    for name, per_model in results.items():
        best = {}
        cells = []
        for label in models:
            for kind in args.kinds:
                form = max(FORMS, key=lambda f: np.mean(per_model[f"{label} | {kind} | {f}"]))
                values = np.array(per_model[f"{label} | {kind} | {form}"])
                cells.append(f"{values.mean():.3f} ({form})")
                if label not in best or values.mean() > best[label].mean():
                    best[label] = values
        cprec, domain_only = list(best.values())[:2]
        share = np.mean(per_model["has_context"])
        print(f"{name} | {share:.0%} | " + " | ".join(cells) + f" | {paired_pvalue(cprec, domain_only):.3g}")


if __name__ == "__main__":
    main()
