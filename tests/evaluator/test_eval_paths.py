"""Where `cprec eval` may write: names from configs and world files stay one path component, and
out_dir never overlaps what the evaluation reads. Every refusal comes before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import untouched
from eval_fixtures import catalogue, write_data_dir

from cprec.core import raytools
from cprec.evaluator.config import DatasetConfig, EvalConfig, MethodConfig
from cprec.evaluator.evaluate import evaluate


@pytest.fixture(autouse=True)
def no_ray(monkeypatch):
    def init_ray(*args, **kwargs):
        raise AssertionError("Ray started before the paths were checked")

    monkeypatch.setattr(raytools, "init_ray", init_ray)


def garden(root: Path) -> Path:
    events = [(f"u{u}", f"GA{(u + k) % 12:04d}", k) for u in range(6) for k in range(4)]
    return write_data_dir(root, "Garden", catalogue("Garden", 12), events)


def refused(config: EvalConfig, root: Path, message: str) -> None:
    untouched.refused(lambda: evaluate(config), root, message)


def popularity(out: Path, **kwargs) -> EvalConfig:
    return EvalConfig(out_dir=str(out), methods=[MethodConfig(kind="popularity")], bootstrap=10, **kwargs)


def test_a_dataset_name_that_leaves_out_dir_is_refused(tmp_path):
    data = garden(tmp_path / "data")
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "precious.txt").write_text("not the evaluator's")
    datasets = [DatasetConfig(name="../../x", data_dir=str(data))]
    refused(popularity(tmp_path / "eval", datasets=datasets), tmp_path, r"datasets\[0\]\.name '\.\./\.\./x' is not a safe name")
    world = tmp_path / "world" / "world.json"
    world.parent.mkdir()
    source = {"format": "amazon2023", "path": "raw"}
    downstream = [{"name": "ok", "source": source}, {"name": "../../x", "source": source}]
    world.write_text(json.dumps({"downstream": downstream}))
    refused(popularity(tmp_path / "eval", world=str(world)), tmp_path, r"downstream\[1\]\.name '\.\./\.\./x'")


def test_out_dir_overlapping_an_input_is_refused(tmp_path):
    data = garden(tmp_path / "data")
    datasets = [DatasetConfig(name="garden", data_dir=str(data))]
    refused(popularity(data, datasets=datasets), tmp_path, f"out_dir {data} is the input {data}")
    refused(popularity(tmp_path, datasets=datasets), tmp_path, f"input {data} is inside out_dir {tmp_path}")
    world = tmp_path / "world" / "world.json"
    world.parent.mkdir()
    world.write_text(json.dumps({"downstream": [{"name": "ok", "source": {"format": "amazon2023", "path": "raw"}}]}))
    refused(popularity(world.parent / "eval", world=str(world)), tmp_path, "is inside the input")
    model = tmp_path / "model"
    model.mkdir()
    llm = EvalConfig(out_dir=str(model / "eval"), datasets=datasets, methods=[MethodConfig(kind="llm", model=str(model))])
    refused(llm, tmp_path, f"out_dir {model / 'eval'} is inside the input {model}")


def test_out_dir_overlapping_a_split_dir_or_a_per_dataset_model_is_refused(tmp_path):
    from cprec.data_prep.downstream import SplitSpec, prepare_split

    spec = SplitSpec(name="garden", data_dir=str(garden(tmp_path / "data")))
    split = prepare_split(spec, {}, str(tmp_path / "split"))
    datasets = [DatasetConfig(name="garden", split_dir=split)]
    refused(popularity(tmp_path, datasets=datasets), tmp_path, f"input {split} is inside out_dir {tmp_path}")
    model = tmp_path / "tuned"
    model.mkdir()
    tuned = MethodConfig(kind="llm", name="tuned", model="unused-hub/id", models={"garden": str(model)})
    config = EvalConfig(out_dir=str(model / "eval"), datasets=datasets, methods=[tuned])
    refused(config, tmp_path, f"out_dir {model / 'eval'} is inside the input {model}")
