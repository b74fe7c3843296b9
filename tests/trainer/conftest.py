"""A tiny data build of the real layout: byte-level BPE tokenizer, packed token shards per split and kind."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cprec.core import template
from cprec.core.schemas import SUCCESS_MARKER
from cprec.data_prep.tokens import pack_documents, train_tokenizer

BLOCK_LEN = 128
DOMAINS = ["Books", "Garden", "Toys"]
ADJECTIVES = ["red", "quiet", "golden", "tiny", "classic", "smart", "wooden", "bright"]
NOUNS = {
    "Books": ["novel", "atlas", "poems"],
    "Garden": ["hose", "spade", "planter"],
    "Toys": ["kite", "robot", "puzzle"],
}
BRANDS = ["Northwind", "Acme", "Lumen"]


def make_tokenizer(texts: list[str], out: Path):
    """data_prep's own byte-level BPE, trained on `texts` and saved where a data dir keeps it."""
    fast = train_tokenizer(texts, vocab_size=400)
    fast.save_pretrained(str(out))
    return fast


def item(rng: random.Random, domain: str) -> str:
    title = f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS[domain])}"
    return template.item_text(domain, title, rng.choice(BRANDS), NOUNS[domain][0])


def documents(rng: random.Random, kind: str, count: int) -> list[str]:
    docs = []
    for _ in range(count):
        if kind == "mixed":
            items = [item(rng, rng.choice(DOMAINS)) for _ in range(rng.randint(2, 4))]
            docs.append(template.document("mixed", template.MIXED_DOMAIN, items))
        else:
            domain = rng.choice(DOMAINS)
            docs.append(
                template.document(kind, domain, [item(rng, domain) for _ in range(rng.randint(2, 4))])
            )
    return docs


def pack(token_docs: list[list[int]], pad_id: int) -> pa.Table:
    """data_prep's packing into BLOCK_LEN rows (documents keep their own positions and ids)."""
    return pack_documents(token_docs, BLOCK_LEN, pad_id)


def write_build(root: Path, counts: dict[tuple[str, str], int], seed: int = 0) -> Path:
    rng = random.Random(seed)
    texts = {key: documents(rng, key[1], n) for key, n in counts.items()}
    (root / "tokenizer").mkdir(parents=True)
    tokenizer = make_tokenizer([t for docs in texts.values() for t in docs], root / "tokenizer")
    for (split, kind), docs in texts.items():
        ids = [tokenizer(d)["input_ids"] + [tokenizer.eos_token_id] for d in docs]
        table = pack(ids, tokenizer.pad_token_id)
        out = root / "tokens" / split / kind
        out.mkdir(parents=True)
        half = table.num_rows // 2
        pq.write_table(table.slice(0, half), out / "part-00000.parquet")
        pq.write_table(table.slice(half), out / "part-00001.parquet", row_group_size=8)
    (root / "stats.json").write_text(json.dumps({"tokens": {}}))
    (root / SUCCESS_MARKER).write_text("")
    return root


@pytest.fixture(scope="session")
def token_build(tmp_path_factory) -> Path:
    """train: domain/mixed/catalog; valid: domain/mixed. About 30 blocks of 128 tokens per train kind."""
    counts = {
        ("train", "domain"): 120,
        ("train", "mixed"): 120,
        ("train", "catalog"): 40,
        ("valid", "domain"): 20,
        ("valid", "mixed"): 20,
    }
    return write_build(tmp_path_factory.mktemp("build"), counts)


@pytest.fixture(scope="session")
def make_build():
    """write_build(root, {(split, kind): documents}) for tests that need another layout."""
    return write_build
