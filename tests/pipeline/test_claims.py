import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cprec.evaluator.results import DatasetResult, MethodKey, MethodResult, Protocol, Results
from cprec.pipeline.claims import CPREC_ZERO_SHOT, Comparison, check, compare, eval_per_user, markdown

# label -> (base, fine_tuned) of the methods a fake run evaluated
RECIPE = {
    "Base zero-shot": ("Base", False),
    "CPRec zero-shot": ("CPRec", False),
    "CPT cosine zero-shot": ("CPT cosine", False),
}


def fake_run(root, seed, lift, labels=None):
    """A finished run whose per-user test NDCG@10 puts CPRec zero-shot `lift` above the base; `labels`
    renames the methods (the record says what each is)."""
    labels = labels or {label: label for label in RECIPE}
    rng = np.random.default_rng(seed)
    eval_dir = root / "eval-x"
    (eval_dir / "per_user").mkdir(parents=True)
    users = [f"u{i}" for i in range(60)]
    base = rng.uniform(0, 0.5, len(users))
    values = {
        "Base zero-shot": base,
        "CPRec zero-shot": base + lift + rng.normal(0, 0.01, len(users)),
        "CPT cosine zero-shot": base + lift + rng.normal(0, 0.01, len(users)),
    }
    columns = {"method": [], "split": [], "user_id": [], "ndcg@10": []}
    for name, per_user in values.items():
        for split in ("valid", "test"):
            columns["method"] += [labels[name]] * len(users)
            columns["split"] += [split] * len(users)
            columns["user_id"] += users
            columns["ndcg@10"] += per_user.tolist()
    pq.write_table(pa.table(columns), eval_dir / "per_user" / "Toys.parquet")
    write_record(eval_dir, {labels[name]: (*RECIPE[name], float(v.mean())) for name, v in values.items()})
    (root / "run.json").write_text(json.dumps({"stages": {"eval": {"path": str(eval_dir)}}}))
    return str(root)


def write_record(eval_dir, methods):
    """results.json naming `methods` (label -> (base, fine_tuned, mean)) on the dataset Toys."""
    entry = DatasetResult("Toys", "marketplace", "Toys", {"users": 60, "items": 50, "events": 900}, 60)
    for label, (base, fine_tuned, mean) in methods.items():
        means = {"ndcg@10": mean}
        entry.methods[label] = MethodResult(
            label=label,
            kind="llm",
            base=base,
            fine_tuned=fine_tuned,
            variant="sum",
            variant_selected_on="fixed",
            valid=means,
            test=means,
            test_ci={"ndcg@10": (mean, mean)},
        )
    protocol = Protocol("full", "full ranking", None, True, "expected", [10], "ndcg@10", "wilcoxon", 0.05, 10)
    Results("2026-12-01T00:00:00+00:00", "1", protocol, {}, {"Toys": entry}).save(str(eval_dir / "results.json"))


def test_claims_pool_seeds_and_judge_each_comparison(tmp_path):
    roots = {s: fake_run(tmp_path / f"s{s}", s, lift=0.05) for s in (0, 1)}
    rows = {(r["better"], r["other"]): r for r in check(roots)}
    beats_base = rows[("CPRec zero-shot", "Base zero-shot")]
    assert beats_base["holds"] and beats_base["p"] < 1e-6 and len(beats_base["seed_differences"]) == 2
    # "at least as good as cosine": equal within noise holds; comparisons with absent methods are left out.
    assert rows[("CPRec zero-shot", "CPT cosine zero-shot")]["holds"]
    assert len(rows) == 2
    assert "holds in 1 of 1 comparisons" in markdown(list(rows.values()), [0, 1])


def test_a_claim_that_fails_says_no(tmp_path):
    roots = {0: fake_run(tmp_path / "s0", 0, lift=-0.05)}
    row = next(r for r in check(roots) if r["other"] == "Base zero-shot")
    assert not row["holds"] and "**no**" in markdown([row], [0])


def test_methods_are_matched_by_what_they_are_not_by_label(tmp_path):
    renamed = {"Base zero-shot": "base-zs", "CPRec zero-shot": "ours", "CPT cosine zero-shot": "cosine"}
    runs = {0: eval_per_user(fake_run(tmp_path / "s0", 0, lift=0.05, labels=renamed) + "/eval-x")}
    [row] = compare(runs, [Comparison("CPT helps", CPREC_ZERO_SHOT, MethodKey("Base"))])
    assert (row["better"], row["other"]) == ("ours", "base-zs") and row["holds"]
    # a record from before `base` existed: its labels say what each method is
    old = tmp_path / "old"
    fake_run(old, 1, lift=0.05)
    raw = json.loads((old / "eval-x" / "results.json").read_text())
    for fields in raw["datasets"]["Toys"]["methods"].values():
        del fields["base"], fields["fine_tuned"]
    (old / "eval-x" / "results.json").write_text(json.dumps(raw))
    runs[1] = eval_per_user(str(old / "eval-x"))
    [row] = compare(runs, [Comparison("CPT helps", CPREC_ZERO_SHOT, MethodKey("Base"))])
    assert row["better"] == "ours" and len(row["seed_differences"]) == 2
