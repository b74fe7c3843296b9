import numpy as np
import pyarrow as pa
import pytest

from cprec.core import template
from cprec.core.schemas import TOKENS
from cprec.core.tokenizer import load_tokenizer
from cprec.data_prep import tokens

TEXTS = [template.item_text("Books", f"The Velvet Harbor {n}", "Northwind Press", "Mystery") for n in range(30)] + [
    template.item_text("Home_and_Kitchen", f"Steel kettle model {n}", None, "Kettles") for n in range(30)
]


@pytest.fixture(scope="module")
def tokenizer():
    headers = [template.header(k, d) for k in ("domain", "catalog") for d in ("Books", "Home_and_Kitchen")]
    return tokens.train_tokenizer(TEXTS + headers + [template.header("mixed", "all")], vocab_size=400)


def test_pack_keeps_every_token_and_every_boundary():
    rng = np.random.default_rng(0)
    docs = [list(rng.integers(10, 99, size=n)) + [1] for n in rng.integers(1, 30, size=60)] + [list(range(10, 45)) + [1]]
    table = tokens.pack_documents(docs, block_len=16, pad_id=0)
    assert table.schema == TOKENS
    ids = np.array(table["input_ids"].to_pylist())
    pos = np.array(table["position_ids"].to_pylist())
    doc = np.array(table["document_ids"].to_pylist())
    assert ids.shape[1] == 16
    # no token lost, in order
    assert ids[doc >= 0].tolist() == [t for d in docs for t in d]
    # padding only at the end of a block
    for row in doc:
        real = row >= 0
        assert not (~real[:-1] & real[1:]).any()
    # each piece's positions run 0, 1, ... and document ids 0, 1, ... per block
    pieces = []
    for b in range(len(doc)):
        for d in sorted(set(doc[b][doc[b] >= 0])):
            mask = doc[b] == d
            assert pos[b][mask].tolist() == list(range(mask.sum()))
            pieces.append(ids[b][mask].tolist())
        assert sorted(set(doc[b][doc[b] >= 0])) == list(range(doc[b].max() + 1))
    # documents that fit a block are never split; longer ones start a block and span the next ones
    joined, current = [], []
    for piece in pieces:
        current += piece
        if piece[-1] == 1:
            joined.append(current)
            current = []
    assert joined == docs
    assert len(pieces) == sum(-(-len(d) // 16) for d in docs)


def test_pack_empty_and_exact_fit():
    assert tokens.pack_documents([], 8, 0).num_rows == 0
    table = tokens.pack_documents([[5, 6, 7, 1], [8, 1], [9, 1]], 4, 0)
    assert table["input_ids"].to_pylist() == [[5, 6, 7, 1], [8, 1, 9, 1]]
    assert table["document_ids"].to_pylist() == [[0, 0, 0, 0], [0, 0, 1, 1]]
    assert table["position_ids"].to_pylist() == [[0, 1, 2, 3], [0, 1, 0, 1]]
    assert tokens.token_stats(table) == {"blocks": 2, "tokens": 8, "padding": 0, "document_pieces": 3}


def docs_table(rows):
    return pa.table(
        {
            "kind": [r[0] for r in rows],
            "domain": [r[1] for r in rows],
            "item_ids": pa.array([r[2] for r in rows], pa.list_(pa.string())),
        }
    )


def test_assembled_documents_equal_whole_document_tokenization(tokenizer):
    spec = tokens.TokenizerSpec.of(tokenizer)
    items = pa.table({"item_id": [f"i{n}" for n in range(len(TEXTS))], "text": TEXTS})
    item_tokens = tokens.item_token_table(items, spec)
    rows = [("domain", "Books", ["i3", "i1", "i3"]), ("mixed", "all", ["i40", "i2"]), ("catalog", "Home_and_Kitchen", ["i31"])]
    docs = docs_table(rows)
    keys = {(k, d) for k, d, _ in rows}
    values, offsets = tokens.assemble_documents(docs, item_tokens.slice(0), spec, tokens.header_token_ids(spec, keys))
    texts = [template.document(k, d, [TEXTS[int(i[1:])] for i in ids]) for k, d, ids in rows]
    assert tokens.documents_agree(values, offsets, texts, spec)
    for n, text in enumerate(texts):
        expected = tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        assert values[offsets[n] : offsets[n + 1]].tolist() == expected
    assert tokenizer.decode(values[offsets[0] : offsets[1] - 1]) == texts[0]


def test_a_tokenizer_that_does_not_split_at_the_separator_is_detected():
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="always")
    backend.train_from_iterator(TEXTS, trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "</s>"], show_progress=False))
    sp_like = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="</s>", pad_token="</s>")
    spec = tokens.TokenizerSpec.of(sp_like)
    items = pa.table({"item_id": ["a", "b"], "text": TEXTS[:2]})
    docs = docs_table([("domain", "Books", ["a", "b"])])
    values, offsets = tokens.assemble_documents(
        docs, tokens.item_token_table(items, spec), spec, tokens.header_token_ids(spec, [("domain", "Books")])
    )
    assert not tokens.documents_agree(values, offsets, [template.document("domain", "Books", TEXTS[:2])], spec)


def test_write_token_dir_is_loadable(tmp_path, tokenizer):
    from transformers import AutoTokenizer

    from cprec.core.storage import require_complete

    table = tokens.pack_documents([[5, 6, 1]], 4, tokenizer.pad_token_id)
    out = tokens.write_token_dir(str(tmp_path / "sft"), {("train", "domain"): table}, tokenizer)
    require_complete(out, "token data")
    loaded = AutoTokenizer.from_pretrained(str(tmp_path / "sft" / "tokenizer"))
    assert loaded.eos_token == tokens.EOS_TOKEN and loaded.pad_token == tokens.PAD_TOKEN
    assert pa.parquet.read_table(tmp_path / "sft/tokens/train/domain/part-00000.parquet").equals(table)


def test_the_built_in_tokenizer_has_no_token_across_the_separator_even_trained_on_whole_documents():
    # Qwen2's pre-tokenizer keeps "Books:\n" together: a merge learnt from it would break assembly
    items = [template.item_text("Books", f"Atlas {n} (2nd ed.)!", "Acme", "Maps:") for n in range(40)]
    rows = [("domain", "Books", [f"i{n}", f"i{n + 1}", f"i{n + 2}"]) for n in range(0, 36, 3)]
    texts = [template.document(k, d, [items[int(i[1:])] for i in ids]) for k, d, ids in rows]
    spec = tokens.TokenizerSpec.of(tokens.train_tokenizer(texts * 5, vocab_size=400))
    item_tokens = tokens.item_token_table(pa.table({"item_id": [f"i{n}" for n in range(40)], "text": items}), spec)
    headers = tokens.header_token_ids(spec, [("domain", "Books")])
    values, offsets = tokens.assemble_documents(docs_table(rows), item_tokens, spec, headers)
    assert tokens.documents_agree(values, offsets, texts, spec)


def test_a_tokenizer_on_object_storage_loads(s3, tmp_path, tokenizer):
    from cprec.core.errors import CPRecError

    uri = f"{s3.bucket('tokens')}/{tmp_path.name}/tokenizer"  # tokens.tokenizer=s3://...
    tokens.save_tokenizer(tokenizer, uri)
    assert load_tokenizer(uri, require_fast=True).get_vocab() == tokenizer.get_vocab()
    with pytest.raises(CPRecError, match=f"^tokenizer not found at {uri}-missing$"):
        load_tokenizer(uri + "-missing", require_fast=True)
