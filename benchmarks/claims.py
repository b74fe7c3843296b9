"""Runs `cprec run` for several seeds and checks the paper's four claims over all of them.

    python benchmarks/claims.py --preset default --seeds 0 1 2 --root runs/claims

Each seed is its own run root (world, training and evaluation all seeded); stages already done are
reused, so an interrupted sweep continues. Writes <root>/claims.md and claims.json, the tables
docs/results.md quotes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cprec.core.cli import main as cprec
from cprec.pipeline.claims import check, markdown


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="default")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--root", default="runs/claims")
    parser.add_argument("overrides", nargs="*", help="key=value overrides for every run")
    args = parser.parse_args()
    roots = {}
    for seed in args.seeds:
        root = str(Path(args.root, f"{args.preset}-seed{seed}").absolute())
        if cprec(["run", "--preset", args.preset, f"out_dir={root}", f"seed={seed}", *args.overrides]) != 0:
            raise SystemExit(f"cprec run failed for seed {seed}")
        roots[seed] = root
    rows = check(roots)
    Path(args.root, "claims.json").write_text(json.dumps(rows, indent=2))
    Path(args.root, "claims.md").write_text(markdown(rows, args.seeds))
    print(markdown(rows, args.seeds))


if __name__ == "__main__":
    run()
