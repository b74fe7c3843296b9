"""Did a change move the report's numbers? Two `cprec run` roots of the same preset and seed, before
and after a change, compared method by method and claim by claim, against the seed-to-seed spread.

    python benchmarks/same_numbers.py BEFORE_ROOT AFTER_ROOT \
        --seeds-claims docs/results/claims-default-seeds012.json

Prints, as markdown: how many (dataset, method, split, metric) means are identical; each claim
comparison's difference of test NDCG@10 means before and after, with the standard deviation of the
same difference over the seeds of a `benchmarks/claims.py` sweep (its `claims.json`), and whether
the verdict (p < 0.05 on the run's own users) changed.
"""

from __future__ import annotations

import argparse
import statistics

from cprec.pipeline.claims import check, per_user


def identical_means(before, after) -> tuple[int, int]:
    same = total = 0
    for name, dataset in before.results.datasets.items():
        for label, method in dataset.methods.items():
            other = after.results.datasets[name].methods[label]
            for split in ("valid", "test"):
                for metric, value in getattr(method, split).items():
                    total += 1
                    same += getattr(other, split)[metric] == value
    return same, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--seeds-claims", help="claims.json of a several-seed sweep of the same preset")
    args = parser.parse_args()
    import json
    from pathlib import Path

    same, total = identical_means(per_user(args.before), per_user(args.after))
    print(f"{same} of {total} (dataset, method, split, metric) means identical\n")
    spread = {}
    if args.seeds_claims:
        for row in json.loads(Path(args.seeds_claims).read_text()):
            spread[row["better"], row["other"], row["dataset"]] = statistics.stdev(row["seed_differences"])
    before, after = check({0: args.before}), check({0: args.after})
    print("| comparison | dataset | difference before | after | change | seed-to-seed sd | verdict before / after |")
    print("| --- | --- | ---: | ---: | ---: | ---: | --- |")
    changes, ratios = [], []
    for old, new in zip(before, after, strict=True):
        difference = old["mean_better"] - old["mean_other"]
        moved = new["mean_better"] - new["mean_other"]
        sd = spread.get((old["better"], old["other"], old["dataset"]))
        changes.append(abs(moved - difference))
        if sd:
            ratios.append(abs(moved - difference) / sd)
        verdicts = f"{'holds' if old['holds'] else 'no'} / {'holds' if new['holds'] else 'no'}"
        print(
            f"| {old['better']} vs {old['other']} | {old['dataset']} | {difference:+.4f} | {moved:+.4f} | "
            f"{moved - difference:+.4f} | {'' if sd is None else f'{sd:.4f}'} | {verdicts} |"
        )
    flipped = sum(o["holds"] != n["holds"] for o, n in zip(before, after))
    print(
        f"\n{len(changes)} comparisons: median |change| {statistics.median(changes):.4f}, largest {max(changes):.4f}; "
        f"verdicts changed: {flipped}"
        + (f"; |change| / seed-to-seed sd: median {statistics.median(ratios):.2f}, largest {max(ratios):.2f}" if ratios else "")
    )


if __name__ == "__main__":
    main()
