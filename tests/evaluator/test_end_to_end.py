"""`cprec eval` over the five downstream datasets of a generated world, with tiny LMs: one zero-shot
everywhere, and one method scoring a model of each dataset's own (as the pipeline's fine-tunings give)."""

import json
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


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from cprec.data_prep.synth import SynthConfig, synthesize

    root = tmp_path_factory.mktemp("world")
    return synthesize(
        SynthConfig(
            out_dir=str(root / "world"), users=60, items_per_domain=30, retail_users=30, retail_items=30
        )
    )


def downstream_names(world) -> list[str]:
    return [d["name"] for d in json.loads(Path(world).read_text())["downstream"]]


def eval_config(tmp_path, world, model, tuned=None, **extra) -> dict:
    """`tuned`: {dataset: model} of a method scored on those datasets only, each with its own model."""
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
            {"kind": "llm", "name": "zero-shot", "model": str(model), "base": "tiny"},
        ]
        + (
            [
                {
                    "kind": "llm",
                    "name": "tuned",
                    "base": "tiny",
                    "fine_tuned": True,
                    "datasets": list(tuned),
                    "models": {name: str(path) for name, path in tuned.items()},
                }
            ]
            if tuned
            else []
        ),
        "sasrec": {"hidden": 16, "max_len": 20, "epochs": 4, "eval_every": 2},
        "llm": {"num_actors": 1, "cpus_per_actor": 0.5, "batch_size": 64, "max_history": 10},
        **extra,
    }


def test_cprec_eval_end_to_end_over_five_datasets(tmp_path, world, ray_local, capsys):
    model = tiny_model(tmp_path / "lm", ["History in Garden:\n[Garden] red lamp | brand: x"] * 5)
    names = downstream_names(world)
    # two datasets, each with a model of its own: another tokenizer and other weights than `model`
    tuned = {
        names[0]: tiny_model(tmp_path / "lm-a", ["History in Toys:\n[Toys] blue kite | brand: y"] * 5),
        "Online_Retail": tiny_model(tmp_path / "lm-b", ["History in Online_Retail:\n[Online_Retail] mug"] * 5),
    }
    config_file = tmp_path / "eval.yaml"
    config_file.write_text(yaml.safe_dump(eval_config(tmp_path, world, model, tuned)))
    assert main(["eval", "--config", str(config_file)]) == 0
    printed = capsys.readouterr().out

    out = tmp_path / "eval"
    results = json.loads((out / "results.json").read_text())
    assert sorted(results["datasets"]) == sorted(names) and len(names) == 5
    platforms = {results["datasets"][n]["platform"] for n in names}
    assert platforms == {"marketplace", "retail"}
    for name in names:
        dataset = results["datasets"][name]
        assert set(dataset["methods"]) == {"popularity", "content", "sasrec", "zero-shot"} | (
            {"tuned"} if name in tuned else set()
        )
        assert dataset["methods"]["zero-shot"]["info"]["model"] == str(model)
        assert dataset["methods"]["zero-shot"]["info"]["fine_tuned"] is False
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
    for name, path in tuned.items():
        method = results["datasets"][name]["methods"]["tuned"]
        assert set(method["variants"]) == {"sum", "mean", "pmi"}
        assert method["info"]["model"] == str(path) and method["info"]["fine_tuned"] is True
    assert not (out / "sft").exists()  # nothing is trained here

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
    assert results.protocol.label.startswith("sampled: 1 positive + 5")
    assert "sampled: 1 positive + 5 random negatives" in (tmp_path / "eval" / REPORT_FILE).read_text()
    with pytest.raises(CPRecError, match="K=20 is larger than the 6 ranked items"):
        evaluate(load_config(EvalConfig, base=sampled))


def test_a_popularity_prior_adds_score_forms_picked_on_validation(tmp_path, world, ray_local):
    model = tiny_model(tmp_path / "lm", ["History in Garden:\n[Garden] red lamp | brand: x"] * 5)
    config = eval_config(tmp_path, world, model)
    config["methods"] = [{"kind": "popularity"}, {"kind": "llm", "name": "zero-shot", "model": str(model)}]
    config["llm"] = {**config["llm"], "num_actors": 0, "popularity_prior": [1.0, 1000.0]}
    results = evaluate(load_config(EvalConfig, base=config))
    for dataset in results.to_dict()["datasets"].values():
        method = dataset["methods"]["zero-shot"]
        forms = ("sum", "mean", "pmi")
        assert set(method["variants"]) == {*forms, *(f"{f}+pop{w}" for f in forms for w in ("1", "1000"))}
        best = max(method["variants"], key=lambda v: method["variants"][v]["valid"]["ndcg@10"])
        assert method["valid"]["ndcg@10"] == pytest.approx(method["variants"][best]["valid"]["ndcg@10"])
    with pytest.raises(CPRecError, match="popularity_prior weights must be > 0"):
        load_config(EvalConfig, base={**config, "llm": {"popularity_prior": [0.0]}}).validate()
