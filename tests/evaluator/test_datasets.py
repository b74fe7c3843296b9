"""Which datasets an evaluation scores and where their splits come from (the split itself is data_prep's:
tests/data_prep/test_downstream.py)."""

import json

import pytest
from eval_fixtures import catalogue, write_data_dir

from cprec.core.config import load_config
from cprec.core.errors import CPRecError
from cprec.data_prep.downstream import SplitSpec, prepare_split
from cprec.evaluator.config import DatasetConfig, EvalConfig, MethodConfig
from cprec.evaluator.datasets import dataset_specs, prepare_datasets

EVENTS = [(f"u{u}", f"GA{(u + k) % 10:04d}", k) for u in range(4) for k in range(4)]


def garden(root):
    return write_data_dir(root, "Garden", catalogue("Garden", 10), EVENTS)


def test_a_dataset_is_prepared_afresh_into_out_dir_every_run(tmp_path):
    spec = DatasetConfig(name="garden", platform="marketplace", data_dir=str(garden(tmp_path / "src")))
    config = EvalConfig(out_dir=str(tmp_path / "out"), datasets=[spec])
    [dataset] = prepare_datasets(config)
    assert (dataset.name, dataset.platform, dataset.n_users, dataset.n_items) == ("garden", "marketplace", 4, 10)
    folder = tmp_path / "out" / "datasets" / "garden"
    marker = (folder / "_SUCCESS").stat().st_mtime_ns
    [again] = prepare_datasets(config)
    assert (folder / "_SUCCESS").stat().st_mtime_ns != marker  # no reuse: that is the pipeline's job
    assert again.user_ids == dataset.user_ids and (again.test == dataset.test).all()


def test_a_split_dir_is_read_as_is(tmp_path):
    data = garden(tmp_path / "src")
    split = prepare_split(SplitSpec(name="garden", platform="retail", data_dir=str(data)), {}, str(tmp_path / "split"))
    spec = DatasetConfig(name="garden", split_dir=split)
    [dataset] = prepare_datasets(EvalConfig(out_dir=str(tmp_path / "out"), datasets=[spec]))
    assert dataset.platform == "retail" and dataset.n_users == 4
    assert not (tmp_path / "out" / "datasets").exists()
    other = DatasetConfig(name="pets", split_dir=split)
    with pytest.raises(CPRecError, match="holds dataset 'garden', not 'pets'"):
        prepare_datasets(EvalConfig(out_dir=str(tmp_path / "out"), datasets=[other]))
    missing = DatasetConfig(name="garden", split_dir=str(tmp_path / "nothing"))
    with pytest.raises(CPRecError, match="dataset split not found"):
        prepare_datasets(EvalConfig(out_dir=str(tmp_path / "out"), datasets=[missing]))


def test_a_dataset_names_exactly_one_of_source_data_dir_and_split_dir():
    for dataset in ("{name: a}", "{name: a, data_dir: d, split_dir: s}", "{name: a, source: {path: p}, split_dir: s}"):
        with pytest.raises(CPRecError, match="exactly one of source.path, data_dir or split_dir"):
            load_config(EvalConfig, overrides=[f"datasets=[{dataset}]"])
    load_config(EvalConfig, overrides=["datasets=[{name: a, split_dir: s}]"])


def test_an_llm_method_needs_a_model_for_every_dataset_it_scores(tmp_path):
    datasets = "datasets=[{name: a, data_dir: d}, {name: b, data_dir: d}]"
    ok = [
        "methods=[{kind: llm, model: m}]",
        "methods=[{kind: llm, name: tuned, models: {a: ma, b: mb}}]",
        "methods=[{kind: llm, name: tuned, models: {a: ma}, model: m}]",
        "methods=[{kind: llm, name: tuned, models: {a: ma}, datasets: [a]}]",
    ]
    for methods in ok:
        load_config(EvalConfig, overrides=[datasets, methods])
    with pytest.raises(CPRecError, match=r"method 'tuned' has no `model` and no `models` entry for datasets \['b'\]"):
        load_config(EvalConfig, overrides=[datasets, "methods=[{kind: llm, name: tuned, models: {a: ma}}]"])
    with pytest.raises(CPRecError, match="needs `model` or `models`"):
        load_config(EvalConfig, overrides=["world=w.json", "methods=[{kind: llm}]"])
    assert MethodConfig(kind="llm", model="x/y", models={"a": "ma"}).model_for("b") == "x/y"

    # a world's names are known once it is read: checked before any dataset is prepared
    (tmp_path / "world.json").write_text(
        json.dumps({"downstream": [{"name": "Pets", "source": {"format": "amazon2023", "path": "raw"}}]})
    )
    methods = [MethodConfig(kind="llm", name="tuned", models={"Toys": "m"})]
    config = EvalConfig(out_dir=str(tmp_path / "out"), world=str(tmp_path / "world.json"), methods=methods)
    with pytest.raises(CPRecError, match=r"no `models` entry for datasets \['Pets'\]"):
        prepare_datasets(config)
    assert not (tmp_path / "out").exists()


def test_world_json_downstream_entries(tmp_path):
    (tmp_path / "world.json").write_text(
        json.dumps(
            {
                "downstream": [
                    {"name": "Pets", "platform": "marketplace",
                     "source": {"format": "amazon2023", "path": "raw/Pets", "domains": ["Pets"]}},
                    {"name": "Retail", "platform": "retail",
                     "source": {"format": "online_retail", "path": "/abs/retail.csv", "domain": "Online_Retail"}},
                ]
            }
        )
    )  # fmt: skip
    specs = dataset_specs(EvalConfig(world=str(tmp_path / "world.json")))
    assert [s.name for s in specs] == ["Pets", "Retail"]
    assert (
        specs[0].source.path == str(tmp_path / "raw" / "Pets") and specs[1].source.path == "/abs/retail.csv"
    )
    assert specs[1].platform == "retail" and specs[1].source.domain == "Online_Retail"
    with pytest.raises(CPRecError, match="world file not found"):
        dataset_specs(EvalConfig(world=str(tmp_path / "nope.json")))
