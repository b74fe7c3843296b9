"""The unified prompt template (docs/design.md §4): the one place that turns items and histories into text.

data_prep writes pre-training documents with it and the evaluator writes downstream prompts and
candidate continuations with it, so pre-training and recommendation speak the same language.
Changing any output of this module is a new TEMPLATE_VERSION.

A document is a header line followed by one line per item, oldest first:

    History in Books:
    [Books] The Velvet Harbor | brand: Northwind Press | category: Mystery
    [Books] ...

An item's fields after its title are optional and left out when missing. The last one, the item's
rating count and average rating from its metadata, is written only when a build asks for it
(data_prep's `item_ratings`, off by default) and the item has a positive count:

    [Books] The Velvet Harbor | brand: Northwind Press | category: Mystery | rating: 4.3 of 5, 1,234 ratings

(` | 1,234 ratings` when the average is missing). Without it every text is what TEMPLATE_VERSION "1"
has always written.

Items are joined by ITEM_SEPARATOR, so a history prompt followed by `continuation(item)` is exactly
the document that would contain that item next, and tokenizers whose pre-tokenizer splits at the
separator give the same tokens for a document as for its pieces tokenized one by one.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Iterable, Sequence

TEMPLATE_VERSION = "1"
ITEM_SEPARATOR = "\n"
MIXED_DOMAIN = "all"

# Upper bounds on each field, in characters; cut at a word boundary.
TITLE_CHARS = 96
BRAND_CHARS = 40
CATEGORY_CHARS = 48

_SPACE = re.compile(r"\s+")


def clean_field(value: object, limit: int) -> str:
    """Whitespace collapsed (no newline survives), cut at a word boundary to `limit` characters.

    Missing values (None, NaN, blank, the literal strings 'None'/'nan') become ''.
    """
    if value is None:
        return ""
    text = _SPACE.sub(" ", str(value)).strip()
    if text.lower() in {"", "none", "nan", "null"}:
        return ""
    if len(text) <= limit:
        return text
    cut = text[: limit + 1].rsplit(" ", 1)[0] if " " in text[:limit] else text[:limit]
    return cut[:limit].rstrip(" ,;:-|")


def domain_label(domain: str) -> str:
    """`Home_and_Kitchen` -> `Home and Kitchen`."""
    return _SPACE.sub(" ", domain.replace("_", " ")).strip()


def item_text(
    domain: str,
    title: object,
    brand: object = None,
    category: object = None,
    rating_number: object = None,
    average_rating: object = None,
) -> str:
    """The text of one item: domain tag, title, then brand/store, leaf category and ratings when present.

    Returns '' when the title is unusable: such items are dropped (and counted) by cleaning.
    """
    title_text = clean_field(title, TITLE_CHARS)
    if not title_text:
        return ""
    parts = [f"[{domain_label(domain)}] {title_text}"]
    brand_text = clean_field(brand, BRAND_CHARS)
    if brand_text:
        parts.append(f"brand: {brand_text}")
    category_text = clean_field(category, CATEGORY_CHARS)
    if category_text:
        parts.append(f"category: {category_text}")
    ratings_text = ratings_field(rating_number, average_rating)
    if ratings_text:
        parts.append(ratings_text)
    return " | ".join(parts)


def ratings_field(rating_number: object, average_rating: object) -> str:
    """`rating: 4.3 of 5, 1,234 ratings`, or `1,234 ratings` without a usable average; '' unless the
    count is a positive integer (an item nobody rated has nothing to say here)."""
    if isinstance(rating_number, bool) or not isinstance(rating_number, numbers.Integral) or rating_number <= 0:
        return ""
    count = f"{int(rating_number):,} rating{'' if rating_number == 1 else 's'}"
    if isinstance(average_rating, numbers.Real) and not isinstance(average_rating, bool):
        if math.isfinite(average_rating):
            return f"rating: {float(average_rating):.1f} of 5, {count}"
    return count


def header(kind: str, domain: str) -> str:
    """The first line of a document of `kind` 'domain', 'mixed' or 'catalog'."""
    if kind == "domain":
        return f"History in {domain_label(domain)}:"
    if kind == "mixed":
        return "History across all domains:"
    if kind == "catalog":
        return f"Catalogue of {domain_label(domain)}:"
    raise ValueError(f"unknown document kind {kind!r} (expected domain, mixed or catalog)")


def document(kind: str, domain: str, item_texts: Iterable[str]) -> str:
    """A whole document: header, then each item on its own line."""
    return header(kind, domain) + "".join(continuation(text) for text in item_texts)


def continuation(text: str) -> str:
    """What follows a document when `text` is the next item: the unit scored at recommendation time."""
    return ITEM_SEPARATOR + text


def history_prompt(domain: str, history_texts: Sequence[str]) -> str:
    """The downstream prompt for a user: their domain-specific document, before the next item."""
    return document("domain", domain, history_texts)


def empty_prompt(domain: str) -> str:
    """The prompt with no history; its likelihood of an item is the item's prior (for PMI scores)."""
    return header("domain", domain)


def windows(length: int, max_items: int) -> list[tuple[int, int]]:
    """Consecutive [start, end) windows covering a history of `length` items, none longer than max_items.

    The windows are as equal in size as possible, so no tail window is too short to be a document:
    120 items with max_items=50 give (0,40), (40,80), (80,120). No interaction is lost.
    """
    if max_items <= 0:
        raise ValueError("max_items must be positive")
    if length <= 0:
        return []
    count = -(-length // max_items)
    base, extra = divmod(length, count)
    bounds, start = [], 0
    for index in range(count):
        end = start + base + (1 if index < extra else 0)
        bounds.append((start, end))
        start = end
    return bounds
