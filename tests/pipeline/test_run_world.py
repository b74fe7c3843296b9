"""`cprec run world=...`: the main job on a user's own world, checked whole before any stage runs.

The world is examples/small-world (docs/world.md): a world.json written by hand over made-up
records in the real layouts — Amazon Reviews 2023 JSONL for pre-training and one downstream
dataset, a RecBole atomic dataset for the other.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import untouched

from cprec.core.config import load_config
from cprec.pipeline.config import RunConfig
from cprec.pipeline.presets import load_preset
from cprec.pipeline.run import run, world_fingerprint

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "small-world"


def smoke(**overrides) -> RunConfig:
    return load_config(RunConfig, overrides=[f"{k}={v}" for k, v in overrides.items()], base=load_preset("smoke"))


def copied_world(tmp_path: Path) -> Path:
    world = tmp_path / "world"
    shutil.copytree(EXAMPLE, world)
    return world


@pytest.fixture(scope="module")
def world_run(tmp_path_factory, ray_local):
    root = tmp_path_factory.mktemp("world-run") / "run"
    run(smoke(world=EXAMPLE / "world.json", out_dir=root), "smoke")
    return root


def test_the_main_job_runs_on_a_hand_written_world(world_run):
    manifest = json.loads((world_run / "run.json").read_text())
    assert "world" not in manifest["stages"]  # nothing generated
    assert {"data", "control", "base", "cpt", "eval"} <= set(manifest["stages"])
    report = (world_run / "report.md").read_text()
    results = json.loads((Path(manifest["stages"]["eval"]["path"]) / "results.json").read_text())
    assert sorted(results["datasets"]) == ["Pet_Supplies", "ml-mini"]
    for method in ("Popularity", "SASRec", "CPRec zero-shot", "CPRec + SFT", "Base + SFT"):
        assert f"| {method} |" in report, method
    # sft_limit: 1 in the smoke preset fine-tunes on the world's first downstream dataset only
    assert report.count("| CPT helps zero-shot |") == 2
    stats = json.loads((Path(manifest["stages"]["data"]["path"]) / "stats.json").read_text())
    with_events = {domain for domain, counts in stats["domains"].items() if counts.get("events")}
    assert with_events == {"All_Beauty", "Home_and_Kitchen"}  # downstream logs never pre-train...
    assert stats["domains"]["ml-mini"]["catalog_text_items"] > 0  # ...but their item texts do


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"sft_datasets": "[Online_Retail]"}, r"sft_datasets names \['Online_Retail'\], which world .* does not list"),
        ({"cpt.no_such_knob": 1}, "no_such_knob"),
        ({"eval.protocol": "sideways"}, "protocol 'sideways'"),
    ],
)
def test_a_preset_that_does_not_fit_the_world_fails_at_second_zero(tmp_path, change, message):
    world = copied_world(tmp_path)
    config = smoke(world=world / "world.json", out_dir=tmp_path / "run", **change)
    untouched.refused(lambda: run(config, "smoke"), tmp_path, message)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda w: w.update(downstream=[]), "lists no downstream datasets"),
        (lambda w: w["pretrain"][0].update(path="no-such-dir"), "does not exist"),
        (lambda w: w["downstream"][1]["source"].update(format="csv"), "unknown source format 'csv'"),
    ],
)
def test_a_broken_world_fails_before_anything_is_written(tmp_path, edit, message):
    world = copied_world(tmp_path)
    manifest = json.loads((world / "world.json").read_text())
    edit(manifest)
    (world / "world.json").write_text(json.dumps(manifest))
    config = smoke(world=world / "world.json", out_dir=tmp_path / "run")
    untouched.refused(lambda: run(config, "smoke"), tmp_path, message)


def test_an_edited_source_file_changes_every_stage_digest(tmp_path):
    world = copied_world(tmp_path)
    before = world_fingerprint(str(world / "world.json"))
    assert world_fingerprint(str(world / "world.json")) == before
    inter = world / "recbole" / "ml-mini" / "ml-mini.inter"
    inter.write_text(inter.read_text() + "70\t1\t5\t999999999\n")
    os.utime(inter, ns=(1, 1))
    assert world_fingerprint(str(world / "world.json")) != before
