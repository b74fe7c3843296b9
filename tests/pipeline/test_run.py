"""`cprec run` end to end on the smoke preset (over the hand-written world, tests/pipeline/conftest.py),
and its stage reuse."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from smallworld import HAND_WRITTEN_WORLD

from cprec.core.cli import main
from cprec.core.config import load_config
from cprec.core.errors import CPRecError
from cprec.pipeline.config import RunConfig
from cprec.pipeline.presets import load_preset, preset_names

EVERY_METHOD = [
    "Popularity",
    "Content (TF-IDF)",
    "SASRec",
    "Base zero-shot",
    "Base + SFT",
    "CPRec zero-shot",
    "CPRec + SFT",
    "CPT domain-only zero-shot",
    "CPT domain-only + SFT",
    "Format control zero-shot",
]


def test_smoke_run_writes_a_report_with_every_method_and_significance(smoke_run):
    report = (smoke_run / "report.md").read_text()
    manifest = json.loads((smoke_run / "run.json").read_text())
    assert set(manifest["stages"]) >= {"data", "control", "base", "cpt", "downstream", "sft-data-pet-supplies", "eval"}
    # the fine-tunings are stages of their own, trained together in one worker group
    tunings = {"sft-base-pet-supplies", "sft-cprec-pet-supplies", "sft-cpt-domain-only-pet-supplies"}
    assert tunings <= set(manifest["stages"])
    group = json.loads((Path(manifest["stages"]["sft-cprec-pet-supplies"]["path"]) / "_STAGE.json").read_text())
    assert set(group["group"]) == tunings
    # so do the continual pre-trainings: CPRec's and its ablations'
    cpt = json.loads((Path(manifest["stages"]["cpt"]["path"]) / "_STAGE.json").read_text())
    assert set(cpt["group"]) == {"cpt", "variant-cpt-domain-only", "variant-format-control"}
    for method in EVERY_METHOD:
        assert f"| {method} |" in report, method
    # which world, and what it is like: the profile of the corpus and of each downstream dataset
    assert f"World: the user's world `{HAND_WRITTEN_WORLD}`" in report
    assert re.search(r"^\| pre-training \| [\d,]+ \|", report, re.M)
    assert re.search(r"^\| Pet_Supplies \| [\d,]+ \|.* \| \d\.\d{3} \| \d\.\d{3} \|$", report, re.M)
    # The paper's questions, answered with paired tests, per dataset and in one line each.
    assert "## Does continual pre-training help?" in report
    assert report.count("| CPT helps zero-shot |") == 2  # the world's two downstream datasets
    assert "| ablation: Format control |" in report and "| ablation: CPT domain-only |" in report
    # claim 3 after fine-tuning as well (the smoke preset fine-tunes on the first downstream dataset only)
    assert report.count("| ablation after SFT: CPT domain-only |") == 1
    assert re.search(r"\(p=[0-9.e-]+\)", report)
    assert "- **CPT helps zero-shot**: CPRec ahead on" in report
    # equal-token comparisons: every pre-training run's real (non-padding) token count is in the table
    training = re.findall(r"^\| (cpt|variant-cpt-domain-only) \| (\d+) \| ([\d,]+) \|", report, re.M)
    assert {name for name, _, _ in training} == {"cpt", "variant-cpt-domain-only"}, training
    # Significance marks and intervals of the evaluator's tables, and every chart on disk.
    assert "p vs best" in report and "test ndcg@10 [95% CI]" in report and " † |" in report
    for chart in ("lr_schedules.png", "loss_curves.png"):
        assert (smoke_run / chart).stat().st_size > 1000
    eval_dir = smoke_run / manifest["stages"]["eval"]["path"].rsplit("/", 1)[-1]
    assert (eval_dir / "results.json").exists() and list(eval_dir.glob("test_*.png"))


def test_the_run_went_through_the_hand_written_world(smoke_run):
    # (before test_a_changed_stage_config_reruns_only_from_that_stage, which rewrites run.json)
    manifest = json.loads((smoke_run / "run.json").read_text())
    assert "world" not in manifest["stages"]  # nothing generated
    results = json.loads((Path(manifest["stages"]["eval"]["path"]) / "results.json").read_text())
    assert sorted(results["datasets"]) == ["Pet_Supplies", "ml-mini"]
    # sft.limit: 1 in the smoke preset fine-tunes on the world's first downstream dataset only
    report = (smoke_run / "report.md").read_text()
    assert report.count("| CPT helps after fine-tuning |") == 1 and "### Pet_Supplies" in report
    stats = json.loads((Path(manifest["stages"]["data"]["path"]) / "stats.json").read_text())
    with_events = {domain for domain, counts in stats["domains"].items() if counts.get("events")}
    assert with_events == {"All_Beauty", "Home_and_Kitchen"}  # downstream logs never pre-train...
    assert stats["domains"]["ml-mini"]["catalog_text_items"] > 0  # ...but their item texts do


def test_a_second_run_reuses_every_stage(smoke_run, capsys):
    assert main(["run", "--preset", "smoke", f"world={HAND_WRITTEN_WORLD}", f"out_dir={smoke_run}"]) == 0
    manifest = json.loads((smoke_run / "run.json").read_text())
    assert all(stage["reused"] for stage in manifest["stages"].values())
    assert "reusing" in capsys.readouterr().out


def test_a_changed_stage_config_reruns_only_from_that_stage(smoke_run):
    overrides = [f"world={HAND_WRITTEN_WORLD}", f"out_dir={smoke_run}", "until=data", "variants=[]"]
    assert main(["run", "--preset", "smoke", *overrides, "data.sequences.max_items=20"]) == 0
    stages = json.loads((smoke_run / "run.json").read_text())["stages"]
    assert set(stages) == {"data"} and not stages["data"]["reused"]


def test_until_profile_profiles_the_world_without_training(smoke_run):
    overrides = [f"world={HAND_WRITTEN_WORLD}", f"out_dir={smoke_run}", "until=profile"]
    assert main(["run", "--preset", "smoke", *overrides]) == 0
    stages = json.loads((smoke_run / "run.json").read_text())["stages"]
    assert set(stages) == {"data", "control", "downstream", "profile"}
    profile = json.loads((Path(stages["profile"]["path"]) / "profile.json").read_text())
    assert set(profile["downstream"]) == {"Pet_Supplies", "ml-mini"}
    assert profile["pretrain"]["events"] > 0 and 0 <= profile["downstream"]["ml-mini"]["item_gini"] < 1
    assert {"popularity_ndcg@10", "tfidf_ndcg@10"} <= set(profile["downstream"]["Pet_Supplies"])


@pytest.mark.parametrize("preset", preset_names())
def test_every_preset_loads_into_every_stage_config(preset):
    from cprec.core.config import layered
    from cprec.data_prep.build import BuildConfig
    from cprec.data_prep.synth import SynthConfig
    from cprec.evaluator.config import EvalConfig
    from cprec.pipeline import recipe

    config = load_config(RunConfig, base=load_preset(preset))
    config.validate()
    load_config(SynthConfig, base=config.synth)
    load_config(BuildConfig, base=layered(config.data, config.control, {"world": "w.json", "out_dir": "o"}))
    sections = [recipe.base_section(config), recipe.cpt_section(config), recipe.sft_section(config)]
    for section in sections + [recipe.variant_section(config, v) for v in config.variants]:
        recipe.train_config(section, "d", "", "o", "check").validate()
    load_config(EvalConfig, base=layered(config.eval, {"world": "w.json"})).validate()


def test_bad_preset_and_bad_stage_key_are_one_line_errors(tmp_path, capsys):
    assert main(["run", "--preset", "nope", f"out_dir={tmp_path}"]) == 2
    assert "unknown preset 'nope'" in capsys.readouterr().err
    assert main(["run", "--preset", "smoke", f"out_dir={tmp_path}", "until=world", "synth.no_such_knob=1"]) == 2
    assert "no_such_knob" in capsys.readouterr().err


def test_a_preset_extends_another_stating_only_what_it_changes(tmp_path):
    child = tmp_path / "child.yaml"
    child.write_text("extends: smoke\ncpt: {steps: 7}\nvariants: []\n")
    smoke, loaded = load_preset("smoke"), load_preset(str(child))
    assert loaded["cpt"]["steps"] == 7 and loaded["variants"] == []
    assert loaded["cpt"]["schedule"] == smoke["cpt"]["schedule"]  # mappings merge, the rest is the parent's
    assert {k: v for k, v in loaded.items() if k not in ("cpt", "variants")} == {
        k: v for k, v in smoke.items() if k not in ("cpt", "variants")
    }
    medium, default = load_preset("medium"), load_preset("default")
    assert medium["train"]["tiny"]["hidden_size"] == 128 and medium["cpt"]["steps"] == 300
    assert medium["variants"] == default["variants"] and medium["eval"] == default["eval"]


def test_a_preset_extending_itself_is_a_clear_error(tmp_path):
    first, second = tmp_path / "first.yaml", tmp_path / "second.yaml"
    first.write_text(f"extends: {second}\n")
    second.write_text(f"extends: {first}\n")
    with pytest.raises(CPRecError, match="extends it back"):
        load_preset(str(first))


def test_stage_and_preset_names_stay_one_path_component(tmp_path, monkeypatch):
    from cprec.pipeline.run import run
    from cprec.pipeline.stages import StageRunner

    def produce(config):
        raise AssertionError("the stage ran")

    with pytest.raises(CPRecError, match=r"stage name '\.\./x' is not a safe name"):
        StageRunner(str(tmp_path)).run("../x", lambda out: {"out_dir": out}, produce)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CPRecError, match=r"preset name '\.\.' is not a safe name"):
        run(RunConfig(), "..")
    assert list(tmp_path.iterdir()) == []
