import json

import pytest
from eval_fixtures import catalogue, write_data_dir

from cprec.core.errors import CPRecError
from cprec.evaluator.config import DatasetConfig, EvalConfig
from cprec.evaluator.datasets import dataset_specs, prepare_dataset

EVENTS = [
    ("u1", "GA0003", 30), ("u1", "GA0001", 10), ("u1", "GA0002", 20), ("u1", "GA0005", 20),
    ("u2", "GA0001", 1), ("u2", "GA0002", 2),  # too short: left out
    ("u3", "GA0009", 5), ("u3", "GA0004", 5), ("u3", "GA0007", 5),  # same time: ordered by item id
    ("u4", "ZZ9999", 1), ("u4", "GA0000", 2), ("u4", "GA0001", 3), ("u4", "GA0002", 4),  # one unknown item
]  # fmt: skip


def prepare(tmp_path, events=EVENTS, items=None, **overrides):
    data = write_data_dir(tmp_path / "src", "Garden", items or catalogue("Garden", 10), events)
    spec = DatasetConfig(name="garden", platform="marketplace", data_dir=str(data))
    config = EvalConfig(out_dir=str(tmp_path / "out"), datasets=[spec], **overrides)
    return prepare_dataset(spec, config), config


def test_leave_one_out_by_time_then_item_id(tmp_path):
    dataset, _ = prepare(tmp_path)
    index = {item: i for i, item in enumerate(dataset.item_ids)}
    assert dataset.item_ids == sorted(dataset.item_ids) and dataset.n_items == 10
    assert dataset.user_ids == ["u1", "u3", "u4"]
    u1, u3, u4 = range(3)
    assert dataset.train[u1].tolist() == [index["GA0001"], index["GA0002"]]
    assert (dataset.valid[u1], dataset.test[u1]) == (index["GA0005"], index["GA0003"])
    assert dataset.train[u3].tolist() == [index["GA0004"]]
    assert (dataset.valid[u3], dataset.test[u3]) == (index["GA0007"], index["GA0009"])
    assert dataset.train[u4].tolist() == [index["GA0000"]]  # the unknown item is gone
    assert dataset.history("test", u1).tolist() == [index["GA0001"], index["GA0002"], index["GA0005"]]
    assert dataset.domain == "Garden" and dataset.item_texts[0].startswith("[Garden] ")


def test_split_and_stats_on_disk_and_reused(tmp_path):
    dataset, config = prepare(tmp_path)
    folder = tmp_path / "out" / "datasets" / "garden"
    stats = json.loads((folder / "stats.json").read_text())
    assert stats["users"] == 3 and stats["items"] == 10 and stats["events"] == 10
    assert stats["users_left_out"] == 1 and stats["events_on_unknown_items"] == 1
    assert stats["train_events"] == 4 and (folder / "_SUCCESS").exists()
    stamp = (folder / "interactions.parquet").stat().st_mtime_ns
    again = prepare_dataset(config.datasets[0], config)
    assert (folder / "interactions.parquet").stat().st_mtime_ns == stamp
    assert again.user_ids == dataset.user_ids and (again.test == dataset.test).all()


def test_no_eligible_users_and_mixed_domains_are_errors(tmp_path):
    with pytest.raises(CPRecError, match="no eligible users"):
        prepare(tmp_path / "a", events=[("u1", "GA0001", 1), ("u1", "GA0002", 2)])
    items = catalogue("Garden", 5) + catalogue("Toys", 5)
    events = [("u1", "GA0001", 1), ("u1", "TO0002", 2), ("u1", "GA0003", 3)]
    data = write_data_dir(tmp_path / "b", "Garden", items, events)
    # rewrite one event's domain: a dataset must hold one domain
    import pyarrow.parquet as pq

    table = pq.read_table(data / "interactions")
    table = table.set_column(2, "domain", [["Garden", "Toys", "Garden"]])
    pq.write_table(table, data / "interactions" / "part-0.parquet")
    spec = DatasetConfig(name="mixed", data_dir=str(data))
    with pytest.raises(CPRecError, match="exactly one domain"):
        prepare_dataset(spec, EvalConfig(out_dir=str(tmp_path / "out"), datasets=[spec]))


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
