import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cprec.pipeline.claims import check, markdown


def fake_run(root, seed, lift):
    """A finished run whose per-user test NDCG@10 puts CPRec zero-shot `lift` above the base."""
    rng = np.random.default_rng(seed)
    eval_dir = root / "eval-x"
    (eval_dir / "per_user").mkdir(parents=True)
    users = [f"u{i}" for i in range(60)]
    base = rng.uniform(0, 0.5, len(users))
    methods = {
        "Base zero-shot": base,
        "CPRec zero-shot": base + lift + rng.normal(0, 0.01, len(users)),
        "CPT cosine zero-shot": base + lift + rng.normal(0, 0.01, len(users)),
    }
    columns = {"method": [], "split": [], "user_id": [], "ndcg@10": []}
    for name, values in methods.items():
        for split in ("valid", "test"):
            columns["method"] += [name] * len(users)
            columns["split"] += [split] * len(users)
            columns["user_id"] += users
            columns["ndcg@10"] += values.tolist()
    pq.write_table(pa.table(columns), eval_dir / "per_user" / "Toys.parquet")
    (root / "run.json").write_text(json.dumps({"stages": {"eval": {"path": str(eval_dir)}}}))
    return str(root)


def test_claims_pool_seeds_and_judge_each_comparison(tmp_path):
    roots = {s: fake_run(tmp_path / f"s{s}", s, lift=0.05) for s in (0, 1)}
    rows = {(r["better"], r["other"]): r for r in check(roots)}
    beats_base = rows[("CPRec zero-shot", "Base zero-shot")]
    assert beats_base["holds"] and beats_base["p"] < 1e-6 and len(beats_base["seed_differences"]) == 2
    # "at least as good as cosine": equal within noise holds; comparisons with absent methods are left out.
    assert rows[("CPRec zero-shot", "CPT cosine zero-shot")]["holds"]
    assert ("CPRec zero-shot", "Format control zero-shot") not in rows
    assert "holds in 1 of 1 comparisons" in markdown(list(rows.values()), [0, 1])


def test_a_claim_that_fails_says_no(tmp_path):
    roots = {0: fake_run(tmp_path / "s0", 0, lift=-0.05)}
    row = next(r for r in check(roots) if r["other"] == "Base zero-shot")
    assert not row["holds"] and "**no**" in markdown([row], [0])
