"""Options of each build step; `cprec.data_prep.build.BuildConfig` gathers them."""

from __future__ import annotations

from dataclasses import dataclass

from cprec.core.config import option
from cprec.core.errors import CPRecError
from cprec.core.schemas import SEQUENCE_KINDS


@dataclass
class CleaningConfig:
    k_users: int = option(5, help="k-core: keep users with at least this many events (0 disables)")
    k_items: int = option(5, help="k-core: keep items with at least this many users (0 disables)")
    per_domain: bool = option(
        False,
        help="k-core per domain (a user's degree counted in each domain separately) instead of over "
        "the all-domain graph; destroys cross-domain signal, so off by default",
    )
    max_rounds: int = option(100, help="give up (error) if k-core has not reached a fixed point after this many rounds")

    def validate(self) -> None:
        if self.k_users < 0 or self.k_items < 0:
            raise CPRecError(f"cleaning.k_users and cleaning.k_items must be >= 0, got {self.k_users}, {self.k_items}")
        if self.max_rounds < 1:
            raise CPRecError(f"cleaning.max_rounds must be >= 1, got {self.max_rounds}")


@dataclass
class SequenceConfig:
    kinds: list[str] = option(["domain", "mixed"], help="sequence kinds to produce: domain, mixed or both")
    min_items: int = option(2, help="sequences (windows) shorter than this are not documents")
    max_items: int = option(50, help="longer histories become consecutive windows of at most this many items")
    mixed_min_domains: int = option(2, help="a user gets mixed sequences only if active in this many domains")
    mixed_share: float = option(
        1.0, help="share of eligible users (by a stable hash of user_id) whose mixed sequences are produced"
    )
    valid_fraction: float = option(0.02, help="share of users (by a stable hash of user_id) held out as 'valid'")
    catalog: bool = option(True, help="also write catalogue-replay documents (token kind 'catalog')")
    catalog_items: int = option(
        1,
        help="items per catalogue-replay document; 1 = one product page each, so replay never shows items "
        "side by side in an order that carries no behaviour",
    )
    scramble: bool = option(
        False,
        help="format control: each sequence keeps its length, domain tags and timestamps but its items are "
        "replaced by random items of the same domain drawn uniformly from the catalogue, in random order, so "
        "documents look the same and carry no behaviour",
    )

    def validate(self) -> None:
        unknown = sorted(set(self.kinds) - set(SEQUENCE_KINDS))
        if unknown or not self.kinds:
            raise CPRecError(f"sequences.kinds must be a non-empty subset of {list(SEQUENCE_KINDS)}, got {self.kinds}")
        if self.min_items < 1 or self.max_items < 1:
            raise CPRecError("sequences.min_items and sequences.max_items must be >= 1")
        if self.min_items > self.max_items:
            raise CPRecError(
                f"sequences.min_items ({self.min_items}) is larger than sequences.max_items ({self.max_items})"
            )
        if not 0.0 <= self.mixed_share <= 1.0:
            raise CPRecError(f"sequences.mixed_share must be in [0, 1], got {self.mixed_share}")
        if not 0.0 <= self.valid_fraction < 1.0:
            raise CPRecError(f"sequences.valid_fraction must be in [0, 1), got {self.valid_fraction}")
        if self.mixed_min_domains < 1:
            raise CPRecError(f"sequences.mixed_min_domains must be >= 1, got {self.mixed_min_domains}")
        if self.catalog_items < 1:
            raise CPRecError(f"sequences.catalog_items must be >= 1, got {self.catalog_items}")


@dataclass
class TokenConfig:
    tokenizer: str = option(
        "",
        help="path or hub id of a Hugging Face tokenizer; '' trains a byte-level BPE on the item texts",
    )
    vocab_size: int = option(4096, help="vocabulary size of the trained byte-level BPE")
    block_len: int = option(512, help="tokens per packed block")
    check_documents: int = option(
        8, help="documents per partition tokenized whole to check that per-item tokenization agrees"
    )

    def validate(self) -> None:
        if self.block_len < 2:
            raise CPRecError(f"tokens.block_len must be >= 2, got {self.block_len}")
        if self.vocab_size < 300:
            raise CPRecError(f"tokens.vocab_size must be >= 300 (256 bytes + specials), got {self.vocab_size}")
        if self.check_documents < 0:
            raise CPRecError(f"tokens.check_documents must be >= 0, got {self.check_documents}")
