"""Did a lever move the numbers? Evaluations of the same seed and users, a baseline and each lever,
compared method by method (docs/results.md, "What makes CPRec win on the default world").

    python benchmarks/levers.py runs/lev/r0 "popularity prior=runs/lev/pop/eval" "ratings=runs/lev/ratings0" \
        --methods "CPRec zero-shot" "CPRec + SFT"

Each argument is a `cprec run` root (its evaluation is read from run.json) or an evaluation's own
output directory. Prints, as markdown, one row per (lever, method): the test NDCG@10 mean over the
datasets before and after, the paired test of after against before over the users of every dataset
pooled (the same users: the levers must keep the downstream splits), and the method before and
after against the popularity baseline of the lever's evaluation (datasets ahead, pooled p).
"""

from __future__ import annotations

import argparse

import numpy as np

from cprec.core import storage
from cprec.evaluator.metrics import paired_pvalue
from cprec.evaluator.results import MethodKey
from cprec.pipeline.claims import EvalRun, eval_per_user, per_user

POPULARITY = MethodKey(kind="popularity")


def load(path: str) -> EvalRun:
    return per_user(path) if storage.exists(storage.join(path, "run.json")) else eval_per_user(path)


def pooled(run: EvalRun, label: str) -> dict[str, np.ndarray]:
    """Per dataset, the method's per-user test values, in user-id order."""
    return {name: frame[label].sort_index().to_numpy(float) for name, frame in run.frames.items() if label in frame}


def popularity(run: EvalRun) -> dict[str, np.ndarray]:
    label = run.results.method(next(iter(run.frames)), POPULARITY).label
    return pooled(run, label)


def row(lever: str, method: str, before: EvalRun, after: EvalRun) -> str:
    was, now, pop = pooled(before, method), pooled(after, method), popularity(after)
    names = sorted(set(was) & set(now))
    if not names:
        return f"| {lever} | {method} | - | - | - | - | - | - |"
    for name in names:
        if len(was[name]) != len(now[name]):
            raise SystemExit(f"{lever}: {name} has other users than the baseline; a lever must keep the splits")
    a, b = np.concatenate([now[n] for n in names]), np.concatenate([was[n] for n in names])
    p_pop = np.concatenate([pop[n] for n in names])

    def against_popularity(values: dict[str, np.ndarray], joined: np.ndarray) -> str:
        ahead = sum(values[n].mean() > pop[n].mean() for n in names)
        return f"{ahead} / {len(names)} ahead, p = {paired_pvalue(joined, p_pop):.2g}"

    return (
        f"| {lever} | {method} | {b.mean():.3f} | {a.mean():.3f} | {a.mean() - b.mean():+.3f} (p = {paired_pvalue(a, b):.2g}) "
        f"| {p_pop.mean():.3f} | {against_popularity(was, b)} | {against_popularity(now, a)} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("baseline", help="a cprec run root or an evaluation directory")
    parser.add_argument("levers", nargs="+", help="NAME=PATH, a run root or evaluation directory each")
    parser.add_argument("--methods", nargs="+", default=["CPRec zero-shot", "CPRec + SFT"])
    args = parser.parse_args()
    before = load(args.baseline)
    print("| lever | method | before | after | after - before (pooled p) | popularity | before vs popularity | after vs popularity |")
    print("| --- | --- | ---: | ---: | --- | ---: | --- | --- |")
    for lever in args.levers:
        name, _, path = lever.partition("=")
        after = load(path)
        for method in args.methods:
            print(row(name, method, before, after))


if __name__ == "__main__":
    main()
