"""Tokenizers, documents as token ids, and packing into fixed-length blocks (core.schemas.TOKENS).

Item texts repeat across millions of events, so each distinct item is tokenized once (as its
`template.continuation`) and a document's ids are assembled from the header's ids, its items' ids
and EOS. That equals tokenizing the whole document whenever no token spans the item separator
(no merge of the built-in tokenizer holds it); `documents_agree` checks it and the build falls back
to whole-document tokenization where it does not.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cprec.core import storage, template
from cprec.core.errors import CPRecError
from cprec.core.schemas import STATS_FILE, TOKENIZER_DIR, TOKENS, TOKENS_DIR

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"

ITEM_TOKENS = pa.schema([("item_id", pa.string()), ("ids", pa.list_(pa.int32()))])


def train_tokenizer(texts: Iterable[str], vocab_size: int):
    """A byte-level BPE trained on `texts`, as a transformers Qwen2Tokenizer with EOS and pad.

    transformers 5 loads the tokenizer of every `qwen2` checkpoint as Qwen2Tokenizer, which rebuilds its
    own normalizer and pre-tokenizer around the saved vocabulary and ignores tokenizer.json's. Trained with
    exactly that pipeline, the tokenizer gives the training ids after any `AutoTokenizer.from_pretrained`:
    of the data build's directory, of a qwen2 export or of a llama one.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer

    pipeline = Qwen2Tokenizer().backend_tokenizer
    backend = Tokenizer(models.BPE())
    backend.normalizer, backend.pre_tokenizer = pipeline.normalizer, pipeline.pre_tokenizer
    backend.decoder = pipeline.decoder
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS_TOKEN, PAD_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # Qwen2's pre-tokenizer keeps punctuation and the newline after it together ("Books:\n"); learnt
    # from the text between separators, no merge holds the newline, so per-item ids still concatenate
    # to exactly the ids of the whole document.
    backend.train_from_iterator((piece for text in texts for piece in text.split(template.ITEM_SEPARATOR)), trainer)
    return Qwen2Tokenizer(tokenizer_object=backend, eos_token=EOS_TOKEN, pad_token=PAD_TOKEN)


@dataclass(frozen=True)
class TokenizerSpec:
    """What a Ray worker needs to tokenize: the Rust tokenizer as JSON and the special ids (picklable)."""

    backend_json: str
    eos_id: int
    pad_id: int
    vocab_size: int

    @classmethod
    def of(cls, tokenizer) -> TokenizerSpec:
        return cls(
            tokenizer.backend_tokenizer.to_str(),
            int(tokenizer.eos_token_id),
            int(tokenizer.pad_token_id),
            len(tokenizer),
        )

    def backend(self):
        from tokenizers import Tokenizer

        return Tokenizer.from_str(self.backend_json)


def encode(backend, texts: Sequence[str]) -> pa.ListArray:
    """Token ids of each text, without special tokens (no BOS: documents start with their header)."""
    encodings = backend.encode_batch(list(texts), add_special_tokens=False)
    lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
    offsets = np.zeros(len(encodings) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    values = np.fromiter((i for e in encodings for i in e.ids), dtype=np.int32, count=int(lengths.sum()))
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values))


def item_token_table(items: pa.Table, spec: TokenizerSpec) -> pa.Table:
    """ITEM_TOKENS of `items` (item_id, text): the ids of each item's continuation, tokenized once."""
    texts = [template.continuation(text) for text in items["text"].to_pylist()]
    return pa.table({"item_id": items["item_id"], "ids": encode(spec.backend(), texts)}, schema=ITEM_TOKENS)


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of arange(s, s + n) for each (s, n), without a Python loop; int32 where every
    index fits (a partition's tokens: half the memory of its largest temporaries)."""
    ends = np.cumsum(lengths)
    total = int(ends[-1]) if len(ends) else 0
    dtype = np.int32 if max(total, int(starts.max(initial=0)) + 1) < 2**31 else np.int64
    index = np.repeat((starts - ends + lengths).astype(dtype), lengths)
    index += np.arange(total, dtype=dtype)
    return index


def assemble_documents(
    docs: pa.Table, item_tokens: pa.Table, spec: TokenizerSpec, header_ids: Mapping[tuple[str, str], Sequence[int]]
) -> tuple[np.ndarray, np.ndarray]:
    """Token ids of documents (kind, domain, item_ids): header ids, each item's ids, then EOS.

    Returns (flat int32 ids, int64 offsets of the documents); `header_ids` maps (kind, domain) to the
    ids of `template.header(kind, domain)`.
    """
    n_docs = docs.num_rows
    item_lists = docs["item_ids"].combine_chunks() if n_docs else pa.array([], pa.list_(pa.string()))
    flat_items = pc.list_flatten(item_lists)
    items_per_doc = pc.list_value_length(item_lists).to_numpy(zero_copy_only=False).astype(np.int64)
    rows = pc.index_in(flat_items, value_set=item_tokens["item_id"].combine_chunks())
    if rows.null_count:
        missing = flat_items.filter(pc.is_null(rows))[0].as_py()
        raise CPRecError(f"internal: item {missing!r} of a document has no token ids")
    rows = rows.to_numpy(zero_copy_only=False).astype(np.int64)
    token_lists = item_tokens["ids"].combine_chunks()
    item_offsets = token_lists.offsets.to_numpy().astype(np.int64)
    item_offsets -= item_offsets[0]  # a sliced list array's offsets do not start at 0
    item_values = token_lists.flatten().to_numpy(zero_copy_only=False).astype(np.int32)

    # One pool holding every item's ids, then each header's ids, then EOS; a document is a list of
    # (start, length) pieces of the pool, gathered in one vectorised step.
    keys = list(zip(docs["kind"].to_pylist(), docs["domain"].to_pylist()))
    distinct = sorted(set(keys))
    header_arrays = [np.asarray(header_ids[key], dtype=np.int32) for key in distinct]
    header_starts = np.cumsum([len(item_values)] + [len(a) for a in header_arrays])
    eos_start = int(header_starts[-1])
    pool = np.concatenate([item_values, *header_arrays, np.asarray([spec.eos_id], dtype=np.int32)])
    key_index = {key: i for i, key in enumerate(distinct)}
    doc_header = np.fromiter((key_index[k] for k in keys), dtype=np.int64, count=n_docs)
    header_lengths = np.asarray([len(a) for a in header_arrays], dtype=np.int64)

    n_pieces = len(rows) + 2 * n_docs
    starts = np.empty(n_pieces, dtype=np.int64)
    lengths = np.empty(n_pieces, dtype=np.int64)
    doc_first_piece = np.concatenate([[0], np.cumsum(items_per_doc)[:-1]]).astype(np.int64) + 2 * np.arange(n_docs)
    if n_docs:
        starts[doc_first_piece] = header_starts[:-1][doc_header]
        lengths[doc_first_piece] = header_lengths[doc_header]
        item_piece = np.arange(len(rows)) + 2 * np.repeat(np.arange(n_docs), items_per_doc) + 1
        starts[item_piece] = item_offsets[rows]
        lengths[item_piece] = item_offsets[rows + 1] - item_offsets[rows]
        eos_piece = doc_first_piece + items_per_doc + 1
        starts[eos_piece] = eos_start
        lengths[eos_piece] = 1
    values = pool[_ranges(starts, lengths)] if n_pieces else np.zeros(0, dtype=np.int32)
    doc_lengths = np.add.reduceat(lengths, doc_first_piece) if n_docs else np.zeros(0, dtype=np.int64)
    offsets = np.zeros(n_docs + 1, dtype=np.int64)
    np.cumsum(doc_lengths, out=offsets[1:])
    return values, offsets


def header_token_ids(spec: TokenizerSpec, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], list[int]]:
    backend = spec.backend()
    return {key: backend.encode(template.header(*key), add_special_tokens=False).ids for key in keys}


def encode_documents(texts: Sequence[str], spec: TokenizerSpec) -> tuple[np.ndarray, np.ndarray]:
    """Whole-document tokenization, each document followed by EOS: the reference and the fallback."""
    ids = encode(spec.backend(), texts)
    return pack_inputs([[*doc, spec.eos_id] for doc in ids.to_pylist()])


def documents_agree(values: np.ndarray, offsets: np.ndarray, texts: Sequence[str], spec: TokenizerSpec) -> bool:
    """Whether assembled ids equal whole-document tokenization for the documents whose `texts` are given."""
    reference, ref_offsets = encode_documents(texts, spec)
    n = len(texts)
    return bool(np.array_equal(ref_offsets, offsets[: n + 1]) and np.array_equal(reference, values[: offsets[n]]))


def pack_inputs(token_ids: Iterable[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Flat ids and offsets of a sequence of documents' ids."""
    arrays = [np.asarray(ids, dtype=np.int32) for ids in token_ids]
    offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
    np.cumsum([len(a) for a in arrays], out=offsets[1:])
    values = np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int32)
    return values.astype(np.int32), offsets


def pack(values: np.ndarray, offsets: np.ndarray, block_len: int, pad_id: int) -> pa.Table:
    """Documents (flat ids + offsets) packed greedily, in order, into TOKENS blocks of `block_len`.

    A document that fits in the space left in the current block goes there; one that does not starts
    a new block (the rest of the current block is padding). A document longer than a block starts a
    fresh block and continues into the following ones, its positions restarting at 0 in each block.
    `position_ids` count from 0 at each document (piece) start; `document_ids` number the documents
    of a block 0, 1, ...; padding (only at a block's end) has document id -1 and position 0.
    """
    lengths = np.diff(offsets)
    if (lengths <= 0).any():
        raise ValueError("every document must have at least one token")
    starts = np.empty(len(lengths), dtype=np.int64)
    position = 0
    for doc, length in enumerate(lengths.tolist()):
        used = position % block_len
        if used and used + length > block_len:
            position += block_len - used
        starts[doc] = position
        position += length
    total = -(-position // block_len) * block_len
    input_ids = np.full(total, pad_id, dtype=np.int32)
    document_ids = np.full(total, -1, dtype=np.int32)
    position_ids = np.zeros(total, dtype=np.int32)
    if len(lengths):
        doc_of_token = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
        slot = np.arange(len(values), dtype=np.int64) - offsets[doc_of_token] + starts[doc_of_token]
        input_ids[slot] = values
        block_start = slot - slot % block_len
        doc_at = np.full(total, -1, dtype=np.int64)
        doc_at[slot] = doc_of_token
        first_doc = doc_at[::block_len]  # every block starts with a token
        document_ids[slot] = doc_of_token - first_doc[slot // block_len]
        position_ids[slot] = slot - np.maximum(starts[doc_of_token], block_start)
    row_offsets = pa.array(np.arange(0, total + 1, block_len, dtype=np.int32))
    return pa.table(
        {
            "input_ids": pa.ListArray.from_arrays(row_offsets, pa.array(input_ids)),
            "position_ids": pa.ListArray.from_arrays(row_offsets, pa.array(position_ids)),
            "document_ids": pa.ListArray.from_arrays(row_offsets, pa.array(document_ids)),
        },
        schema=TOKENS,
    )


def pack_documents(token_ids: Iterable[Sequence[int]], block_len: int, pad_id: int) -> pa.Table:
    """TOKENS blocks of documents given as token id sequences (each should already end with EOS)."""
    values, offsets = pack_inputs(token_ids)
    return pack(values, offsets, block_len, pad_id)


def token_stats(table: pa.Table) -> dict[str, int]:
    """Blocks, real tokens, padding and documents (pieces of a split document count once per block)."""
    if table.num_rows == 0:
        return {"blocks": 0, "tokens": 0, "padding": 0, "document_pieces": 0}
    doc_ids = pc.list_flatten(table["document_ids"]).to_numpy()
    block_len = len(doc_ids) // table.num_rows
    per_block = doc_ids.reshape(table.num_rows, block_len).max(axis=1) + 1
    padding = int((doc_ids < 0).sum())
    return {
        "blocks": table.num_rows,
        "tokens": len(doc_ids) - padding,
        "padding": padding,
        "document_pieces": int(per_block.sum()),
    }


def save_tokenizer(tokenizer, uri: str) -> None:
    """Writes a Hugging Face tokenizer directory to a local or object-store path."""
    with tempfile.TemporaryDirectory() as local:
        tokenizer.save_pretrained(local)
        for name in sorted(os.listdir(local)):
            with open(os.path.join(local, name), "rb") as file:
                storage.write_bytes(storage.join(uri, name), file.read())


def write_token_dir(out_dir: str, split_kind_tables: Mapping[tuple[str, str], pa.Table], tokenizer) -> str:
    """A minimal data directory the trainer accepts (tokens/, tokenizer/, stats.json, _SUCCESS).

    For token data made outside `cprec data build`, e.g. SFT sequences packed with `pack_documents`.
    """
    from cprec.data_prep.files import TOKEN_ROW_GROUP_ROWS, write_table

    stats: dict[str, dict[str, dict[str, int]]] = {}
    with storage.atomic_output(out_dir, "token data") as staging:
        for (split, kind), table in sorted(split_kind_tables.items()):
            if table.schema != TOKENS:
                raise CPRecError(f"token table for ({split}, {kind}) does not have the TOKENS schema")
            write_table(table, storage.join(staging, TOKENS_DIR, split, kind, "part-00000.parquet"), TOKEN_ROW_GROUP_ROWS)
            stats.setdefault("tokens", {}).setdefault(split, {})[kind] = token_stats(table)
        save_tokenizer(tokenizer, storage.join(staging, TOKENIZER_DIR))
        storage.write_text(storage.join(staging, STATS_FILE), json.dumps(stats, indent=2, sort_keys=True))
    return out_dir
