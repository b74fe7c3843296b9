"""Where a build (or synth) may write: never over or into its inputs, never over a directory it did not make.

Every refusal comes before Ray starts (`init_ray` fails the test) and leaves the disk as it was.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import untouched
from amazon_fixture import write_world

from cprec.core import raytools, storage
from cprec.core.config import load_config
from cprec.core.errors import CPRecError
from cprec.data_prep.build import BuildConfig, _Build, build


@pytest.fixture(autouse=True)
def no_ray(monkeypatch):
    def init_ray(*args, **kwargs):
        raise AssertionError("Ray started before the output paths were checked")

    monkeypatch.setattr(raytools, "init_ray", init_ray)


def config(out, *overrides: str, src: Path | None = None) -> BuildConfig:
    sources = [f"sources=[{{format: amazon2023, path: '{src}'}}]"] if src else []
    return load_config(BuildConfig, overrides=[f"out_dir={out}", *sources, "progress_bars=false", *overrides])


def refused(cfg: BuildConfig, root: Path, message: str) -> None:
    untouched.refused(lambda: build(cfg), root, message)


def test_out_dir_equal_to_inside_or_around_an_input_is_refused(tmp_path):
    src = write_world(tmp_path / "src")
    refused(config(src, src=src), tmp_path, f"out_dir {src} is the input {src}")
    refused(config(src / "out", src=src), tmp_path, f"out_dir {src / 'out'} is inside the input {src}")
    refused(config(tmp_path, src=src), tmp_path, f"input {src} is inside out_dir {tmp_path}")


def test_a_world_build_may_not_write_into_the_worlds_directory(tmp_path):
    write_world(tmp_path / "w" / "marketplace")
    world = tmp_path / "w" / "world.json"
    world.write_text(json.dumps({"pretrain": [{"format": "amazon2023", "path": "marketplace"}]}))
    refused(config(tmp_path / "w", f"world={world}"), tmp_path, "is inside out_dir")
    refused(config(tmp_path / "w" / "pretrain", f"world={world}"), tmp_path, "is inside the input")


def test_the_working_directory_is_refused(tmp_path, monkeypatch):
    src = write_world(tmp_path / "src")
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "notes.txt").write_text("mine")
    monkeypatch.chdir(tmp_path / "work")
    refused(config(".", src=src), tmp_path, "out_dir . is the working directory")


def test_a_directory_that_is_no_earlier_build_is_refused(tmp_path):
    src = write_world(tmp_path / "src")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "results.csv").write_text("a,b\n")
    refused(config(tmp_path / "mine", src=src), tmp_path, "exists and is not a cprec output .no _SUCCESS.")
    # nor a complete output of another command
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "_SUCCESS").write_text(json.dumps({"stage": "train fit"}))
    refused(config(tmp_path / "model", src=src), tmp_path, "output of cprec stage 'train fit', not 'data build'")


def test_a_foreign_rejects_directory_is_refused_up_front(tmp_path):
    src = write_world(tmp_path / "src")
    (tmp_path / "out.rejected").mkdir()
    (tmp_path / "out.rejected" / "keep.txt").write_text("mine")
    refused(config(tmp_path / "out", src=src), tmp_path, f"out_dir {tmp_path / 'out.rejected'} exists and is not")


def test_unsafe_domain_names_are_refused(tmp_path):
    src = write_world(tmp_path / "src")
    cfg = config(tmp_path / "out", src=src)
    cfg.sources[0].domains = ["../Books"]
    refused(cfg, tmp_path, f"source {src}: domain '../Books' is not a safe name")


def test_rejects_go_aside_only_over_an_earlier_rejects_aside(tmp_path):
    staging = tmp_path / ".out.staging-00000000"
    (staging / "rejects").mkdir(parents=True)
    (staging / "rejects" / "part-00000.parquet").write_bytes(b"rows")
    failed = SimpleNamespace(config=SimpleNamespace(out_dir=str(tmp_path / "out")), out=str(staging), stats={"n": 1})
    aside = tmp_path / "out.rejected"
    aside.mkdir()
    (aside / "keep.txt").write_text("mine")
    with pytest.raises(CPRecError, match="out.rejected exists and is not a cprec output"):
        _Build.keep_rejects_aside(failed)
    assert [p.name for p in aside.iterdir()] == ["keep.txt"]
    (aside / "keep.txt").unlink()  # an empty directory may go
    for _ in range(2):  # and an earlier rejects-aside is replaced
        assert _Build.keep_rejects_aside(failed) == str(aside)
        assert (aside / "rejects" / "part-00000.parquet").read_bytes() == b"rows"
        assert json.loads((aside / "stats.json").read_text()) == {"n": 1}
    storage.require_complete(str(aside), "rejects")


def test_synth_refuses_a_directory_that_is_no_earlier_world_before_generating(tmp_path, monkeypatch):
    from cprec.data_prep import synth

    def generate(config):
        raise AssertionError("the world was generated before out_dir was checked")

    monkeypatch.setattr(synth, "generate", generate)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    before = untouched.snapshot(tmp_path)
    with pytest.raises(CPRecError, match="exists and is not a cprec output"):
        synth.synthesize(synth.SynthConfig(out_dir=str(tmp_path / "mine")))
    assert untouched.snapshot(tmp_path) == before
