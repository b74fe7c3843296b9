"""Downstream splits (leave-one-out by time) and the SFT token data made from them."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cprec.core import schemas, storage, template
from cprec.core.errors import CPRecError
from cprec.data_prep import downstream, tokens
from cprec.data_prep.downstream import SplitSpec, load_split, prepare_split

EVENTS = [
    ("u1", "GA0003", 30), ("u1", "GA0001", 10), ("u1", "GA0002", 20), ("u1", "GA0005", 20),
    ("u2", "GA0001", 1), ("u2", "GA0002", 2),  # too short: left out
    ("u3", "GA0009", 5), ("u3", "GA0004", 5), ("u3", "GA0007", 5),  # same time: ordered by item id
    ("u4", "ZZ9999", 1), ("u4", "GA0000", 2), ("u4", "GA0001", 3), ("u4", "GA0002", 4),  # one unknown item
]  # fmt: skip


def catalogue(domain: str, size: int) -> list[dict]:
    return [
        {
            "item_id": f"{domain[:2].upper()}{i:04d}",
            "domain": domain,
            "text": template.item_text(domain, f"blue kettle {i}", f"brand{i % 3}", "kettles"),
        }
        for i in range(size)
    ]


def write_data_dir(root, items, events, domains=None):
    """A data_prep output dir (items.parquet + interactions/), what prepare_split reads."""
    (root / schemas.INTERACTIONS_DIR).mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(items, schema=schemas.ITEMS), root / schemas.ITEMS_FILE)
    domains = domains or ["Garden"] * len(events)
    rows = [{"user_id": u, "item_id": i, "domain": d, "timestamp": t} for (u, i, t), d in zip(events, domains)]
    pq.write_table(
        pa.Table.from_pylist(rows, schema=schemas.INTERACTIONS), root / schemas.INTERACTIONS_DIR / "part-0.parquet"
    )
    (root / schemas.SUCCESS_MARKER).write_text("")
    return root


def split_of(tmp_path, events=EVENTS, items=None, name="garden"):
    data = write_data_dir(tmp_path / "src", items or catalogue("Garden", 10), events)
    spec = SplitSpec(name=name, platform="marketplace", data_dir=str(data))
    return prepare_split(spec, {}, str(tmp_path / "split"))


def test_leave_one_out_by_time_then_item_id(tmp_path):
    dataset = load_split(split_of(tmp_path))
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
    assert (dataset.name, dataset.platform) == ("garden", "marketplace")


def test_split_and_stats_on_disk_and_prepared_again_in_place(tmp_path):
    folder = tmp_path / "split"
    assert split_of(tmp_path) == str(folder)
    stats = json.loads((folder / "stats.json").read_text())
    assert stats["users"] == 3 and stats["items"] == 10 and stats["events"] == 10
    assert stats["users_left_out"] == 1 and stats["events_on_unknown_items"] == 1
    assert stats["train_events"] == 4 and stats["split_version"] == downstream.SPLIT_VERSION
    assert stats["source"] == str(tmp_path / "src") and (folder / "_SUCCESS").exists()
    spec = SplitSpec(name="garden", data_dir=str(tmp_path / "src"))
    prepare_split(spec, {}, str(folder))  # its own earlier output is replaceable
    assert load_split(str(folder)).user_ids == ["u1", "u3", "u4"]


def test_no_eligible_users_mixed_domains_and_a_spec_without_one_source_are_errors(tmp_path):
    with pytest.raises(CPRecError, match="no eligible users"):
        split_of(tmp_path / "a", events=[("u1", "GA0001", 1), ("u1", "GA0002", 2)])
    assert not (tmp_path / "a" / "split").exists()
    items = catalogue("Garden", 5) + catalogue("Toys", 5)
    events = [("u1", "GA0001", 1), ("u1", "TO0002", 2), ("u1", "GA0003", 3)]
    data = write_data_dir(tmp_path / "b", items, events, domains=["Garden", "Toys", "Garden"])
    with pytest.raises(CPRecError, match="exactly one domain"):
        prepare_split(SplitSpec(name="mixed", data_dir=str(data)), {}, str(tmp_path / "b-split"))
    with pytest.raises(CPRecError, match="exactly one of source.path or data_dir"):
        prepare_split(SplitSpec(name="none"), {}, str(tmp_path / "c"))
    both = SplitSpec(name="both", source={"format": "amazon2023", "path": "raw"}, data_dir=str(data))
    with pytest.raises(CPRecError, match="exactly one of source.path or data_dir"):
        prepare_split(both, {}, str(tmp_path / "c"))
    with pytest.raises(CPRecError, match="dataset split not found"):
        load_split(str(tmp_path / "nothing"))


def long_histories(tmp_path):
    """Eight users of 6 to 13 events each: train histories of 4 to 11 items."""
    events = [(f"u{u}", f"GA{(u * 3 + k) % 20:04d}", k) for u in range(8) for k in range(6 + u)]
    return split_of(tmp_path, events=events, items=catalogue("Garden", 20))


def test_sft_documents_window_histories_and_hold_out_no_test_item(tmp_path):
    dataset = load_split(long_histories(tmp_path))
    docs = downstream.sft_documents(dataset, max_items=4, valid_fraction=0.3, seed=0)
    expected = [
        template.document("domain", "Garden", [dataset.item_texts[i] for i in dataset.train[u][start:end]])
        for u in range(dataset.n_users)
        for start, end in template.windows(len(dataset.train[u]), 4)
    ]
    assert docs["train"] == expected
    # held users' history plus their validation item, never a test item
    held = {
        template.document("domain", "Garden", [dataset.item_texts[i] for i in dataset.history("test", u)[start:end]])
        for u in range(dataset.n_users)
        for start, end in template.windows(len(dataset.history("test", u)), 4)
    }
    assert docs["valid"] and set(docs["valid"]) <= held  # one user at least is always held
    assert 0 < len(docs["valid"]) < len(held)
    assert docs == downstream.sft_documents(dataset, max_items=4, valid_fraction=0.3, seed=0)


def test_sft_documents_need_a_training_history_of_two_items(tmp_path):
    dataset = load_split(split_of(tmp_path))  # every training history here is one or two items long
    short = dataset.train[0][:1]
    dataset.train = [short for _ in dataset.train]
    with pytest.raises(CPRecError, match="no training history of 2\\+ items"):
        downstream.sft_documents(dataset, max_items=50, valid_fraction=0.5, seed=0)


@pytest.fixture(scope="module")
def token_dir(tmp_path_factory):
    """A small token dir as data_prep writes one: its tokenizer is what an SFT tokenizes with."""
    texts = [row["text"] for row in catalogue("Garden", 20)] + [template.header("domain", "Garden")]
    tokenizer = tokens.train_tokenizer(texts, vocab_size=400)
    ids = [tokenizer(t)["input_ids"] + [tokenizer.eos_token_id] for t in texts]
    table = tokens.pack_documents(ids, 32, tokenizer.pad_token_id)
    return tokens.write_token_dir(
        str(tmp_path_factory.mktemp("tokens") / "data"), {("train", "domain"): table}, tokenizer
    )


def test_write_sft_data_packs_the_documents_the_trainer_reads(tmp_path, token_dir):
    from transformers import AutoTokenizer

    split = long_histories(tmp_path)
    tokenizer_uri = storage.join(token_dir, schemas.TOKENIZER_DIR)
    out = str(tmp_path / "sft")
    data_dir = downstream.write_sft_data(split, tokenizer_uri, out, 64, 4, 0.3, 0)
    assert data_dir == storage.join(out, downstream.SFT_TOKENS_DIR)
    storage.require_complete(out, "sft data")
    storage.require_complete(data_dir, "token data")

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_uri)
    docs = downstream.sft_documents(load_split(split), 4, 0.3, 0)
    stats = json.loads((tmp_path / "sft" / "data" / "stats.json").read_text())
    for part in ("train", "valid"):
        table = pq.read_table(tmp_path / "sft" / "data" / "tokens" / part / "domain")
        assert table.schema == schemas.TOKENS and len(table["input_ids"][0]) == 64
        ids = np.array(table["input_ids"].to_pylist())[np.array(table["document_ids"].to_pylist()) >= 0]
        expected = [t for row in tokenizer(docs[part])["input_ids"] for t in row + [tokenizer.eos_token_id]]
        assert ids.tolist() == expected  # every document, EOS after each, in order
        assert stats["tokens"][part]["domain"]["blocks"] == table.num_rows
    info = json.loads((tmp_path / "sft" / downstream.SFT_FILE).read_text())
    assert info["train_blocks"] == stats["tokens"]["train"]["domain"]["blocks"] > 1
    assert info["documents"] == {part: len(docs[part]) for part in ("train", "valid")}
    assert downstream.sft_train_blocks(out) == info["train_blocks"]
    assert AutoTokenizer.from_pretrained(f"{data_dir}/tokenizer").get_vocab() == tokenizer.get_vocab()


def test_epoch_steps():
    assert downstream.epoch_steps(blocks=100, epochs=2, per_step=8) == 25
    assert downstream.epoch_steps(blocks=10, epochs=0.5, per_step=4) == 2  # ceil(1.25)
    assert downstream.epoch_steps(blocks=1, epochs=0.01, per_step=64) == 1
    with pytest.raises(ValueError):
        downstream.epoch_steps(blocks=1, epochs=1, per_step=0)
