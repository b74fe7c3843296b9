"""The one way every stage loads a Hugging Face tokenizer: the data build (`tokens.tokenizer`), the
trainer (the data build's `tokenizer/`) and the evaluator (a model directory).

transformers is imported inside `load_tokenizer`, so cprec.core still imports without it.
"""

from __future__ import annotations

import re

from cprec.core import storage
from cprec.core.errors import CPRecError

# A hub repo id: 'name' or 'org/name' of letters, digits, '_', '.', '-' (transformers' rule).
_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?")


def load_tokenizer(
    source: str, *, what: str = "tokenizer", require_fast: bool = False, model_vocab_check: bool = False
):
    """The tokenizer at `source`: a local directory, an object-store directory (through this node's
    cache, `storage.local_copy`) or a hub id.

    It must have an EOS token (every document ends with one); a missing pad token becomes EOS.
    `require_fast`: it must have a Rust implementation (the data build tokenizes in Ray workers with
    it). `model_vocab_check`: `source` is a model directory, and its embeddings must cover every
    token id of its tokenizer. `what` names `source` in the errors ("model" for a model directory).
    """
    from transformers import AutoConfig, AutoTokenizer

    if storage.is_local(source) and not storage.local_path(source).exists() and not _hub_id(source):
        raise CPRecError(f"{what} not found: {source} does not exist")
    local = storage.local_copy(source, what)
    try:
        tokenizer = AutoTokenizer.from_pretrained(local)
        vocab = AutoConfig.from_pretrained(local).get_text_config().vocab_size if model_vocab_check else None
    except Exception as exc:  # transformers raises OSError, ValueError, ... for a bad path or id
        raise CPRecError(f"cannot load {what} {source!r}: {exc}".splitlines()[0]) from exc
    if require_fast and not getattr(tokenizer, "is_fast", False):
        raise CPRecError(f"{what} {source!r} has no fast (Rust) tokenizer, which the data build needs")
    if vocab is not None and len(tokenizer) > vocab:
        raise CPRecError(
            f"tokenizer mismatch at {source}: the tokenizer has {len(tokenizer)} tokens, the model embeds {vocab}"
        )
    if tokenizer.eos_token_id is None:
        raise CPRecError(f"{what} {source!r} has no EOS token, which ends every document")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _hub_id(name: str) -> bool:
    """A hub id, not a local path that is merely missing: shaped like one, and 'org/' is no local
    directory ('data/tokenizer' with a local `data/` is a path)."""
    return bool(_HUB_ID.fullmatch(name)) and not ("/" in name and storage.local_path(name.split("/")[0]).exists())
