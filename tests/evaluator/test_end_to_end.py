"""`cprec eval` over the five downstream datasets of a generated world, with a tiny LM (zero-shot + SFT)."""

import json
import math
from pathlib import Path

import pytest
import yaml
from eval_fixtures import tiny_model

from cprec.core.cli import main
from cprec.core.config import load_config
from cprec.core.errors import CPRecError
from cprec.evaluator.config import EvalConfig
from cprec.evaluator.evaluate import evaluate
from cprec.evaluator.report import REPORT_FILE, chart_name

SFT_TRAIN = {
    "steps": 2,
    "micro_batch_size": 2,
    "eval_every": 0,
    "eval_batches": 1,
    "log_every": 1,
    "deepspeed": {"zero_stage": 0},
    "scaling": {"num_workers": 1, "cpus_per_worker": 0.5},
    "checkpoint": {"every": 100},
}
SFT_EPOCHS = 0.2


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from cprec.data_prep.synth import SynthConfig, synthesize

    root = tmp_path_factory.mktemp("world")
    return synthesize(
        SynthConfig(
            out_dir=str(root / "world"), users=60, items_per_domain=30, retail_users=30, retail_items=30
        )
    )


def eval_config(tmp_path, world, model, **extra) -> dict:
    return {
        "out_dir": str(tmp_path / "eval"),
        "world": world,
        "build": {
            "cleaning": {"k_users": 0, "k_items": 0},
            "partitions": 2,
            "task_cpus": 0.5,
            "progress_bars": False,
        },
        "max_users": 12,
        "bootstrap": 100,
        "methods": [
            {"kind": "popularity"},
            {"kind": "content"},
            {"kind": "sasrec"},
            {"kind": "llm", "name": "zero-shot", "model": str(model)},
            # fine-tuning (a Ray Train run per dataset) on the retail platform only, to keep the test short
            {"kind": "sft", "name": "sft", "model": str(model), "datasets": ["Online_Retail"]},
        ],
        "sasrec": {"hidden": 16, "max_len": 20, "epochs": 4, "eval_every": 2},
        "llm": {"num_actors": 1, "cpus_per_actor": 0.5, "batch_size": 64, "max_history": 10},
        # epochs, not SFT_TRAIN's steps, set the run's length (checked in the end-to-end test)
        "sft": {"block_len": 128, "train": SFT_TRAIN, "epochs": SFT_EPOCHS},
        **extra,
    }


def test_cprec_eval_end_to_end_over_five_datasets(tmp_path, world, ray_local, capsys):
    model = tiny_model(tmp_path / "lm", ["History in Garden:\n[Garden] red lamp | brand: x"] * 5)
    config_file = tmp_path / "eval.yaml"
    config_file.write_text(yaml.safe_dump(eval_config(tmp_path, world, model)))
    assert main(["eval", "--config", str(config_file)]) == 0
    printed = capsys.readouterr().out

    out = tmp_path / "eval"
    results = json.loads((out / "results.json").read_text())
    names = [d["name"] for d in json.loads(Path(world).read_text())["downstream"]]
    assert sorted(results["datasets"]) == sorted(names) and len(names) == 5
    platforms = {results["datasets"][n]["platform"] for n in names}
    assert platforms == {"marketplace", "retail"}
    for name in names:
        dataset = results["datasets"][name]
        tuned = name == "Online_Retail"
        assert set(dataset["methods"]) == {"popularity", "content", "sasrec", "zero-shot"} | (
            {"sft"} if tuned else set()
        )
        assert dataset["users_evaluated"] <= 12
        for method in dataset["methods"].values():
            for split in ("valid", "test"):
                assert 0 <= method[split]["ndcg@10"] <= method[split]["hr@10"] <= method[split]["hr@20"] <= 1
        assert dataset["methods"]["zero-shot"]["variant"] in ("sum", "mean", "pmi")
        # a progress line per method, before the summary printed at the end
        for label in dataset["methods"]:
            assert printed.index(f"[cprec eval] {name} / {label}: done in ") < printed.index(f"{name}: best test")
        assert (out / "datasets" / name / "stats.json").exists() and (
            out / "per_user" / f"{name}.parquet"
        ).exists()
        p_values = dataset["significance"]["ndcg@10"]["p_values"]
        assert len(p_values) == len(dataset["methods"]) - 1 and all(0 <= p <= 1 for p in p_values.values())
    sft = results["datasets"]["Online_Retail"]["methods"]["sft"]
    assert set(sft["variants"]) == {"sum", "mean", "pmi"}
    assert (out / "sft" / "sft" / "Online_Retail" / "train" / "model" / "config.json").exists()
    assert sft["info"]["fine_tuned_model"].endswith("model")
    sft_run = out / "sft" / "sft" / "Online_Retail"
    blocks = json.loads((sft_run / "data" / "stats.json").read_text())["tokens"]["train"]["domain"]["blocks"]
    steps = [json.loads(line)["step"] for line in (sft_run / "train" / "metrics.jsonl").read_text().splitlines()]
    expected = math.ceil(SFT_EPOCHS * blocks / SFT_TRAIN["micro_batch_size"])
    assert steps[-1] == expected != SFT_TRAIN["steps"]

    report = (out / REPORT_FILE).read_text()
    assert all(f"## {name} " in report for name in names) and "**" in report
    assert "full ranking over the whole catalogue" in report
    for metric in ("ndcg@10", "hr@10"):
        assert (out / chart_name(metric)).read_bytes()[:4] == b"\x89PNG"

    # `cprec eval report` re-renders from results.json alone
    (out / REPORT_FILE).unlink()
    assert main(["eval", "report", f"out_dir={out}"]) == 0
    assert (out / REPORT_FILE).read_text() == report


def test_sampled_protocol_is_labelled_and_k_beyond_catalogue_fails(tmp_path, world, ray_local):
    base = {
        **eval_config(tmp_path, world, "unused"),
        "methods": [{"kind": "popularity"}, {"kind": "content"}],
    }
    sampled = {**base, "protocol": "sampled", "negatives": 5}
    results = evaluate(load_config(EvalConfig, base={**sampled, "ks": [1, 5], "select_metric": "ndcg@5"}))
    assert results["protocol"]["label"].startswith("sampled: 1 positive + 5")
    assert "sampled: 1 positive + 5 random negatives" in (tmp_path / "eval" / REPORT_FILE).read_text()
    with pytest.raises(CPRecError, match="K=20 is larger than the 6 ranked items"):
        evaluate(load_config(EvalConfig, base=sampled))


@pytest.mark.slow
def test_sft_on_every_dataset(tmp_path, world, ray_local):
    model = tiny_model(tmp_path / "lm", ["History in Garden:\n[Garden] red lamp | brand: x"] * 5)
    base = eval_config(tmp_path, world, model)
    base["methods"] = [{"kind": "popularity"}, {"kind": "sft", "name": "sft", "model": str(model)}]
    results = evaluate(load_config(EvalConfig, base=base))
    assert len(results["datasets"]) == 5
    for name, dataset in results["datasets"].items():
        assert dataset["methods"]["sft"]["variant"] in ("sum", "mean", "pmi")
        assert (tmp_path / "eval" / "sft" / "sft" / name / "train" / "model" / "config.json").exists()
