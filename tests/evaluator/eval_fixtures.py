"""Helpers of the evaluator tests: tiny datasets in the data_prep contract and a tiny random LM."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from cprec.core import schemas
from cprec.core.template import item_text

COLOURS = ["red", "blue", "green", "amber", "violet", "silver"]
NOUNS = ["lamp", "kettle", "scarf", "novel", "mug", "clock", "candle", "jacket"]


def catalogue(domain: str, size: int) -> list[dict]:
    return [
        {
            "item_id": f"{domain[:2].upper()}{i:04d}",
            "domain": domain,
            "text": item_text(domain, f"{COLOURS[i % 6]} {NOUNS[i % 8]} {i}", f"brand{i % 5}", NOUNS[i % 8]),
        }
        for i in range(size)
    ]


def write_data_dir(root: Path, domain: str, items: list[dict], events: list[tuple[str, str, int]]) -> Path:
    """A data_prep output dir (items.parquet + interactions/), the contract the evaluator reads."""
    (root / schemas.INTERACTIONS_DIR).mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(items, schema=schemas.ITEMS), root / schemas.ITEMS_FILE)
    rows = [{"user_id": u, "item_id": i, "domain": domain, "timestamp": t} for u, i, t in events]
    pq.write_table(
        pa.Table.from_pylist(rows, schema=schemas.INTERACTIONS),
        root / schemas.INTERACTIONS_DIR / "part-0.parquet",
    )
    (root / schemas.SUCCESS_MARKER).write_text("")
    return root


def tiny_model(path: Path, texts: list[str], arch: str = "llama", hidden: int = 32, **extra) -> Path:
    """A random 2-layer causal LM with data_prep's byte-level BPE trained on `texts`, saved to `path`;
    `extra` goes to the model's config."""
    from transformers import (
        LlamaConfig,
        LlamaForCausalLM,
        MistralConfig,
        MistralForCausalLM,
        Qwen2Config,
        Qwen2ForCausalLM,
    )

    from cprec.data_prep.tokens import train_tokenizer

    fast = train_tokenizer(texts, vocab_size=400)
    shape = {
        "vocab_size": len(fast),
        "hidden_size": hidden,
        "intermediate_size": 2 * hidden,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 2048,
        "eos_token_id": fast.eos_token_id,
        "pad_token_id": fast.pad_token_id,
        "bos_token_id": None,
    }
    classes = {
        "llama": (LlamaConfig, LlamaForCausalLM),
        "qwen2": (Qwen2Config, Qwen2ForCausalLM),
        "mistral": (MistralConfig, MistralForCausalLM),
    }
    config_class, model_class = classes[arch]
    model = model_class(config_class(**shape, **extra))
    model.save_pretrained(path)
    fast.save_pretrained(path)
    return path
