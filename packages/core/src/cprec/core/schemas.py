"""Arrow schemas of every table that crosses a package boundary (docs/design.md §5).

Readers produce RAW_EVENTS and RAW_ITEMS; data_prep writes ITEMS, INTERACTIONS, SEQUENCES, TOKENS
and REJECTS; the trainer and evaluator read them. Column names used across packages are named here.
"""

from __future__ import annotations

import pyarrow as pa

# What every reader yields, whatever the source format: one row per source record that parsed.
# `source_file` and `line` (1-based) travel with every record so rejects can point at their origin.
RAW_EVENTS = pa.schema(
    [
        ("user_id", pa.string()),
        ("item_id", pa.string()),
        ("domain", pa.string()),
        ("timestamp", pa.int64()),  # Unix milliseconds
        ("source_file", pa.string()),
        ("line", pa.int64()),
    ]
)

RAW_ITEMS = pa.schema(
    [
        ("item_id", pa.string()),
        ("domain", pa.string()),
        ("title", pa.string()),
        ("brand", pa.string()),  # brand or store
        ("category", pa.string()),  # leaf category
        ("description", pa.string()),
        # the metadata's behaviour signal (Amazon 2023: rating_number, average_rating); null where a
        # format has none or the value is malformed
        ("rating_number", pa.int64()),
        ("average_rating", pa.float64()),
        ("source_file", pa.string()),
        ("line", pa.int64()),
    ]
)

# Every dropped record as written to rejects/. It keeps its raw text, so nothing is lost and it can
# be fixed and fed again; `status` says whether it counts against the reject-rate bound ('reject')
# or is valid input that is not used ('skip').
REJECTS = pa.schema(
    [
        ("source_file", pa.string()),
        ("line", pa.int64()),
        ("reason", pa.string()),
        ("record", pa.string()),
        ("status", pa.string()),  # 'reject' or 'skip'
        ("domain", pa.string()),
    ]
)

# items.parquet; data_prep's catalogue has the same columns before untitled items (text '') are dropped.
ITEMS = pa.schema([("item_id", pa.string()), ("domain", pa.string()), ("text", pa.string())])

INTERACTIONS = pa.schema(
    [
        ("user_id", pa.string()),
        ("item_id", pa.string()),
        ("domain", pa.string()),
        ("timestamp", pa.int64()),
    ]
)

SEQUENCE_KINDS = ("domain", "mixed")
SEQUENCES = pa.schema(
    [
        ("user_id", pa.string()),
        ("kind", pa.string()),  # 'domain' or 'mixed'
        ("domain", pa.string()),  # 'all' for mixed
        ("item_ids", pa.list_(pa.string())),
        ("timestamps", pa.list_(pa.int64())),
        ("text", pa.string()),
        ("split", pa.string()),  # 'train' or 'valid' (held-out users, by a hash of user_id)
    ]
)

# Packed token blocks, all of one fixed length. `position_ids` restart at 0 at every document
# start, which is what a model needs to keep attention and positions inside each document;
# padding (only at the end of a block) has `document_ids` = -1 and is never a label.
TOKEN_KINDS = ("domain", "mixed", "catalog")
TOKENS = pa.schema(
    [
        ("input_ids", pa.list_(pa.int32())),
        ("position_ids", pa.list_(pa.int32())),
        ("document_ids", pa.list_(pa.int32())),  # 0, 1, ... per block; -1 marks padding
    ]
)

# Output directory layout of `cprec data build`.
ITEMS_FILE = "items.parquet"
INTERACTIONS_DIR = "interactions"
SEQUENCES_DIR = "sequences"
TOKENS_DIR = "tokens"  # tokens/<split>/<kind>/part-*.parquet
TOKENIZER_DIR = "tokenizer"
STATS_FILE = "stats.json"
REJECTS_DIR = "rejects"
SUCCESS_MARKER = "_SUCCESS"
