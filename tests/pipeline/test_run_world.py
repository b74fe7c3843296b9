"""`cprec run world=...`: the main job on a user's own world (tests/pipeline/smallworld.py), checked
whole before any stage runs."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import untouched
from smallworld import EXAMPLE

from cprec.core.config import load_config
from cprec.pipeline.config import RunConfig
from cprec.pipeline.presets import load_preset
from cprec.pipeline.recipe import world_fingerprint
from cprec.pipeline.run import run


def smoke(**overrides) -> RunConfig:
    return load_config(RunConfig, overrides=[f"{k}={v}" for k, v in overrides.items()], base=load_preset("smoke"))


def copied_world(tmp_path: Path) -> Path:
    world = tmp_path / "world"
    shutil.copytree(EXAMPLE, world)
    return world


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"sft.datasets": "[Online_Retail]"}, r"sft.datasets names \['Online_Retail'\], which world .* does not list"),
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
