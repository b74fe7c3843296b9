"""A synthetic review log with the statistics and the file layouts of the real Amazon Reviews dumps.

The data build benchmark (`data_build.py`) runs on this world rather than on clean files, so the
build pays what it pays on real data. Per million review lines, with the defaults:

  - 7 domains of unequal sizes (29% ... 5% of the lines);
  - users with lognormal activity (median 4 reviews, mean ~7.6, p99 ~50, max in the hundreds), each with a
    home domain that takes ~60% of their reviews and the rest spread over all domains;
  - items with power-law (Zipf) popularity inside each domain (~12 lines per item on average);
  - day-granular times (2018: `unixReviewTime` is midnight UTC; 2023: ms, one time of day per user
    and day, half the reviews of that day at exactly that time), a quarter of a user's reviews on
    the same day as their previous one (ties the build breaks by item id);
  - ~2.5% duplicate lines: 1.5% exact copies of a review line and 1% repeats of a (user, item) pair
    with another day, rating and text;
  - ~2% of items without a metadata line (their reviews are `unknown_item` rejects), ~1% with one
    but no usable title (empty, blank, absent, "nan"), 0.5% with a second metadata line that has
    another title, 0.2% also listed in another domain's metadata file;
  - ~0.05% truncated (malformed) review lines, 0.02% truncated metadata lines, a few lines without
    a user id (key absent or "") and a few impossible timestamps (ms for s, or s for ms);
  - review lines of realistic size: lognormal review text (tens to hundreds of words, drawn from a
    Zipf-weighted vocabulary, with some JSON escapes): review lines average ~440 bytes raw, ~127
    bytes gzipped; a million review lines make ~150 MB of gzip files with their metadata.

Two layouts of the same world (same users, items, days and counts):
  amazon2018: `<Domain>.json.gz` (overall, vote, verified, reviewTime "MM D, YYYY", reviewerID, asin,
              style, reviewerName, reviewText, summary, unixReviewTime [s], image) and
              `meta_<Domain>.json.gz` (category list, description list, title, also_buy, brand,
              feature, rank, also_view, main_cat, date, price, asin, imageURL, ...);
  amazon2023: `<Domain>.jsonl.gz` (rating, title, text, images, asin, parent_asin, user_id,
              timestamp [ms], helpful_vote, verified_purchase) and `meta_<Domain>.jsonl.gz`
              (main_category, title, average_rating, rating_number, features, description, price,
              images, videos, store, categories, details {..., "Brand"}, parent_asin, bought_together).

numpy draws the world (`default_rng(seed)`; the same seed gives the same files), DuckDB composes the
JSON lines chunk by chunk, and gzip (level 4) writes them, two files at a time: 1M review lines
take ~7 s and 0.8 GB of memory on 2 cores (the per-event arrays are ~30 bytes an event; text
exists one chunk at a time). The profile (returned, and in `_profile.json`) counts what was made;
`_DONE` marks a finished directory, which `generate` then skips. Both names start with `_`, so
`cprec data build` ignores them.

    python benchmarks/amazon_world.py OUT_DIR --events 1000000 --layout amazon2018 [--seed 0]
"""

from __future__ import annotations

import gzip
import json
import math
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

LAYOUTS = ("amazon2018", "amazon2023")

# (domain, share of review lines, main category as the 2018/2023 dumps name it)
DOMAINS = (
    ("Books", 0.29, "Books"),
    ("Clothing_Shoes_and_Jewelry", 0.19, "AMAZON FASHION"),
    ("Home_and_Kitchen", 0.16, "Amazon Home"),
    ("Electronics", 0.13, "All Electronics"),
    ("Sports_and_Outdoors", 0.10, "Sports & Outdoors"),
    ("Toys_and_Games", 0.08, "Toys & Games"),
    ("Pet_Supplies", 0.05, "Pet Supplies"),
)
USER_MEAN_EVENTS = 7.0  # lognormal activity (before the +1 floor), sigma below
USER_SIGMA = 1.1
USER_MAX_EVENTS = 3000
HOME_DOMAIN_SHARE = 0.6  # share of a user's reviews in their home domain; the rest follow the domain shares
LINES_PER_ITEM = 12.0  # items per domain = the domain's lines / this
ZIPF_EXPONENT = 0.9  # popularity of the item of rank r ~ (r + ZIPF_OFFSET) ** -ZIPF_EXPONENT
ZIPF_OFFSET = 2.0
SAME_DAY_SHARE = 0.25  # reviews written on the same day as the user's previous one
EXACT_DUPLICATE_SHARE = 0.015  # of all review lines: exact copies of another line
REPEAT_PAIR_SHARE = 0.01  # of all review lines: the same (user, item) again, another day
NO_METADATA_SHARE = 0.02  # of items (outside the top 1%): no metadata line
UNTITLED_SHARE = 0.01  # of items with metadata: no usable title
SECOND_METADATA_SHARE = 0.005  # of items: a second metadata line with another title, anywhere in the file
CROSS_DOMAIN_METADATA_SHARE = 0.002  # of items: a metadata line in another domain's file too
MALFORMED_SHARE = 0.0005  # of review lines: truncated JSON
MALFORMED_METADATA_SHARE = 0.0002
MISSING_USER_PER_MILLION = 20  # review lines without a user id (absent or "")
IMPOSSIBLE_TIME_PER_MILLION = 10  # review lines whose timestamp is in the wrong unit
FIRST_DAY = (date(2000, 1, 1) - date(1970, 1, 1)).days
LAST_DAY = (date(2018, 9, 30) - date(1970, 1, 1)).days
REVIEW_SENTENCES = 2.5  # median sentences per review (lognormal, sigma 0.8)
PSEUDO_WORDS = 1500  # made-up words after the common ones; word frequencies are Zipf(WORD_ZIPF)
WORD_ZIPF = 1.1
CHUNK_LINES = 200_000
GZIP_LEVEL = 4  # level 6 is ~10x slower on this text for 5% smaller files

# Line flags
OK, NO_USER_KEY, EMPTY_USER, BAD_TIME, TRUNCATED = 0, 1, 2, 3, 4

_COMMON = (
    "the and a to it i is this for of my in with that but was not on great good very so have they are as you be one "
    "just product use well like all would at if these love can get from had more nice or when really quality price "
    "work fit time them than easy will also about little no only make much size its used perfect bought recommend "
    "made does been what out too even bit better small still could some after because first up did do which were "
    "other into day we me looks well cute comfortable sturdy happy again set year old son daughter gift came "
    "received looking fine item works nicely expected order ordered long color wear washed pretty great value "
    "returned cheap broke months weeks easily definitely highly purchase far best worth soft heavy light read "
    "story book author characters series loved pages ending kids dog cat toy battery charger cable sound screen"
).split()
_SYLLABLES = (
    "ka lo mi ra ve ton sel dur an bri co fa gen hal is jor ket lum mar nor ol pen quin ros sta tur ul vin wel "
    "xan yor zel tra mon del fin gar hol lin mer nap ped sor tal ver"
).split()
_NOUNS = {
    "Books": ["Novel", "Guide", "Cookbook", "Handbook", "Memoir", "Collection", "Stories", "Workbook", "Edition"],
    "Clothing_Shoes_and_Jewelry": ["T-Shirt", "Sneaker", "Dress", "Hoodie", "Necklace", "Jeans", "Boot", "Jacket"],
    "Home_and_Kitchen": ["Skillet", "Blender", "Towel Set", "Mug", "Knife", "Storage Bin", "Sheet Set", "Kettle"],
    "Electronics": ["Charger", "USB Cable", "Headphones", "Speaker", "Adapter", "Case", "Mouse", "Keyboard"],
    "Sports_and_Outdoors": ["Water Bottle", "Yoga Mat", "Tent", "Backpack", "Dumbbell", "Headlamp", "Knife"],
    "Toys_and_Games": ["Puzzle", "Board Game", "Doll", "Building Set", "Action Figure", "Plush", "Card Game"],
    "Pet_Supplies": ["Dog Collar", "Cat Litter", "Leash", "Chew Toy", "Pet Bed", "Bowl", "Treats", "Harness"],
}
_ADJECTIVES = (
    "Premium Classic Deluxe Portable Heavy Duty Stainless Steel Organic Compact Wireless Adjustable Waterproof "
    "Vintage Modern Soft Large Small Extra Professional Ultra Slim Durable Lightweight"
).split()
_COLORS = "Black White Navy Red Grey Blue Green Pink Beige Brown Silver".split()
_FIRST_NAMES = (
    "Mary John Linda James Patricia Robert Jennifer Michael Susan David Karen William Lisa Richard Nancy Joseph "
    "Betty Thomas Sandra Charles Donna Chris Carol Daniel Ruth Mark Sharon Paul Laura Steven"
).split()
_STYLES = {
    "Books": ['{"Format:": " Paperback"}', '{"Format:": " Kindle Edition"}', '{"Format:": " Hardcover"}',
              '{"Format:": " Audible Audiobook"}'],
    "Clothing_Shoes_and_Jewelry": ['{"Size:": " Large", "Color:": " Black"}', '{"Size:": " Medium", "Color:": " Navy"}',
                                   '{"Size:": " 9 M US"}', '{"Color:": " Silver"}'],
}  # fmt: skip
_DEFAULT_STYLES = ['{"Color:": " Black"}', '{"Size:": " 1 Pack"}', '{"Style:": " Standard"}']
_STYLE_SHARE = {"Books": 0.6, "Clothing_Shoes_and_Jewelry": 0.7}
_STAR_WORDS = ["One Star", "Two Stars", "Three Stars", "Four Stars", "Five Stars"]
_UNTITLED = ['""', '"   "', '"nan"', None]  # the title JSON value of an untitled item (None: key absent)
_ALNUM = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", np.uint8)


# ----------------------------------------------------------------------------- small vectorised helpers


def _mix(x: np.ndarray | int) -> np.ndarray:
    """splitmix64's finaliser: a bijection of uint64, used as a stateless hash (text choices per line)."""
    with np.errstate(over="ignore"):  # wrapping is the point
        z = np.asarray(x, dtype=np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _hash(seed: int, salt: int, *keys: np.ndarray) -> np.ndarray:
    h = _mix(np.uint64(seed * 1_000_003 + salt))
    for key in keys:
        h = _mix(h ^ np.asarray(key, dtype=np.uint64))
    return h


def _unit(h: np.ndarray) -> np.ndarray:
    """A uint64 hash as a float in [0, 1)."""
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def _codes(prefix: bytes, values: np.ndarray, width: int, alphabet: np.ndarray = _ALNUM) -> pa.Array:
    """Fixed-width ids: `prefix` + `width` digits of `values` in base len(alphabet) (unique if values are)."""
    n, base = len(values), np.uint64(len(alphabet))
    chars = np.empty((n, len(prefix) + width), np.uint8)
    chars[:, : len(prefix)] = np.frombuffer(prefix, np.uint8)
    v = values.astype(np.uint64)
    for k in range(len(prefix) + width - 1, len(prefix) - 1, -1):
        chars[:, k] = alphabet[(v % base).astype(np.intp)]
        v = v // base
    step = chars.shape[1]
    offsets = np.arange(0, n * step + 1, step, dtype=np.int64)
    return pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(chars.reshape(-1)))


def _join(pool: pa.Array, ids: np.ndarray, counts: np.ndarray, sep: str) -> pa.Array:
    """One string per row: pool[ids] in runs of `counts`, joined with `sep`."""
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    lists = pa.LargeListArray.from_arrays(pa.array(offsets), pc.take(pool, pa.array(ids)))
    return pc.binary_join(lists, pa.scalar(sep, pool.type))


def _concat(*parts) -> pa.Array:
    """Element-wise concatenation of string arrays and constant strings, as large strings."""
    cast = [pa.scalar(p, pa.large_string()) if isinstance(p, str) else p.cast(pa.large_string()) for p in parts]
    return pc.binary_join_element_wise(*cast, pa.scalar("", pa.large_string()))


def _positions(counts: np.ndarray) -> np.ndarray:
    """0..count-1 for each row, concatenated (the position of each element inside its row)."""
    counts = np.asarray(counts, dtype=np.int64)
    return np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)


def _zipf_cdf(n: int, exponent: float, offset: float = ZIPF_OFFSET) -> np.ndarray:
    weights = (np.arange(n, dtype=np.float64) + offset) ** -exponent
    cdf = np.cumsum(weights)
    return cdf / cdf[-1]


def _draw(rng: np.random.Generator, cdf: np.ndarray, size: int) -> np.ndarray:
    return np.minimum(np.searchsorted(cdf, rng.random(size), side="right"), len(cdf) - 1)


# ----------------------------------------------------------------------------- text pools


@dataclass
class _Pools:
    sentences: pa.Array  # JSON-escaped review sentences
    phrases: pa.Array  # short review titles / summaries
    words: pa.Array  # capitalised title words
    brands: pa.Array
    names: pa.Array  # reviewer names
    categories: dict[str, list[list[str]]]  # domain -> category paths (without the top level)


def _pools(seed: int) -> _Pools:
    rng = np.random.default_rng([seed, 1])
    pseudo = {"".join(rng.choice(_SYLLABLES, size=int(rng.integers(2, 4)))) for _ in range(6000)} - set(_COMMON)
    vocab = np.array(_COMMON + sorted(pseudo)[:PSEUDO_WORDS])
    cdf = _zipf_cdf(len(vocab), WORD_ZIPF, 2.7)
    tokens = pa.array(np.concatenate([vocab, np.char.add(vocab, ","), np.char.capitalize(vocab)]).tolist())

    def sentences(n: int, median_words: float, sigma: float, capitalise_all: bool = False) -> pa.Array:
        lengths = np.clip(np.rint(rng.lognormal(math.log(median_words), sigma, n)), 1, 60).astype(np.int64)
        ids = _draw(rng, cdf, int(lengths.sum()))
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        v = len(vocab)
        if capitalise_all:
            ids = ids + 2 * v
        else:
            ids[starts] += 2 * v  # capitalised first word
            comma = (rng.random(len(ids)) < 0.06) & (ids < v)
            ids[comma] += v
        return _join(tokens, ids, lengths, " ")

    n_sent = 1 << 16
    body = sentences(n_sent, 9, 0.5).to_numpy(zero_copy_only=False).astype(object)
    end = rng.choice(np.array([".", "!", "?", "...", " :)"]), size=n_sent, p=[0.78, 0.14, 0.04, 0.03, 0.01])
    body = np.char.add(body.astype(str), end)
    # some JSON escapes, as real text has (quotes, non-ASCII letters written as \\uXXXX, HTML entities)
    extra = rng.random(n_sent)
    body = np.where(extra < 0.02, np.char.add(body, ' It says \\"premium\\" on the box.'), body)
    body = np.where((extra >= 0.02) & (extra < 0.03), np.char.add(body, " Caf\\u00e9 quality, na\\u00efve me."), body)
    body = np.where((extra >= 0.03) & (extra < 0.04), np.char.add(body, " Fit &amp; finish are fine."), body)
    phrases = sentences(4096, 3, 0.4)
    words = pa.array(np.char.capitalize(vocab).tolist())
    brand_names = np.char.capitalize(np.array(sorted(pseudo)[:4000]))
    suffix = rng.choice(np.array(["", "", "", " Co.", " Inc", " Home", " Press", " Labs", " & Sons"]), size=4000)
    names = [f"{f} {chr(65 + i % 26)}." for i, f in enumerate(_FIRST_NAMES * 40)]
    names += ["Amazon Customer"] * 100 + ["Kindle Customer"] * 20
    categories = {}
    for domain, _, _ in DOMAINS:
        level2 = [" ".join(np.char.capitalize(rng.choice(vocab[:400], size=2))) for _ in range(8)]
        categories[domain] = [
            [top, f"{top} {noun}s"] + ([str(rng.choice(_ADJECTIVES)) + f" {noun}s"] if rng.random() < 0.5 else [])
            for top in level2
            for noun in _NOUNS[domain][:5]
        ]
    return _Pools(
        sentences=pa.array(body.tolist(), pa.large_string()),
        phrases=phrases.cast(pa.large_string()),
        words=words.cast(pa.large_string()),
        brands=pa.array(np.char.add(brand_names, suffix).tolist(), pa.large_string()),
        names=pa.array(names, pa.large_string()),
        categories=categories,
    )


# ----------------------------------------------------------------------------- the world (numbers only)


@dataclass
class _World:
    domain_names: list[str]
    item_domain: np.ndarray  # (items,) domain index
    item_offsets: np.ndarray  # (domains + 1,) items of domain d: [offsets[d], offsets[d + 1])
    has_meta: np.ndarray  # (items,) bool
    untitled: np.ndarray  # (items,) bool (only meaningful with has_meta)
    # records: base events and repeat pairs, one row each
    user: np.ndarray  # int32
    item: np.ndarray  # int32
    domain: np.ndarray  # int8
    day: np.ndarray  # int32, days since 1970-01-01
    rating: np.ndarray  # int8 1..5
    sentences: np.ndarray  # int16: review length in sentences
    # lines: one row per review line (records + exact duplicates)
    line_record: np.ndarray  # int32 -> record
    line_flag: np.ndarray  # int8: OK, NO_USER_KEY, EMPTY_USER, BAD_TIME, TRUNCATED
    users: int
    base_events: int
    repeat_pairs: int
    exact_duplicates: int


def _world(events: int, seed: int) -> _World:
    rng = np.random.default_rng(seed)
    shares = np.array([s for _, s, _ in DOMAINS])
    exact = round(EXACT_DUPLICATE_SHARE * events)
    repeats = round(REPEAT_PAIR_SHARE * events)
    base = events - exact - repeats
    n_items = np.maximum(50, np.rint(events * shares / LINES_PER_ITEM)).astype(np.int64)
    item_offsets = np.concatenate([[0], np.cumsum(n_items)])
    items = int(item_offsets[-1])

    # users: lognormal activity; drawn with a margin for the accidental repeats removed below
    mu = math.log(USER_MEAN_EVENTS) - USER_SIGMA**2 / 2
    activity = np.minimum(
        USER_MAX_EVENTS, 1 + np.floor(rng.lognormal(mu, USER_SIGMA, int(base * 1.3 / USER_MEAN_EVENTS) + 10))
    )
    activity = activity[: int(np.searchsorted(np.cumsum(activity), base * 1.08)) + 1].astype(np.int64)
    n_users = len(activity)
    home = rng.choice(len(DOMAINS), size=n_users, p=shares)
    user = np.repeat(np.arange(n_users, dtype=np.int32), activity)
    n = len(user)
    domain = np.where(rng.random(n) < HOME_DOMAIN_SHARE, home[user], rng.choice(len(DOMAINS), size=n, p=shares)).astype(
        np.int8
    )
    # items: Zipf by rank inside each domain, ranks mapped to item ids by a random permutation
    item = np.empty(n, np.int32)
    rank_to_item = []
    for d in range(len(DOMAINS)):
        at = np.flatnonzero(domain == d)
        perm = rng.permutation(n_items[d]).astype(np.int32) + item_offsets[d]
        rank_to_item.append(perm)
        item[at] = perm[_draw(rng, _zipf_cdf(int(n_items[d]), ZIPF_EXPONENT), len(at))]
    # a user reviews an item once, except for the repeat pairs added on purpose
    keep = np.sort(np.unique(user.astype(np.int64) * items + item, return_index=True)[1])[:base]
    if len(keep) < base:
        raise RuntimeError("not enough distinct (user, item) pairs drawn; raise the user margin")
    user, item, domain = user[keep], item[keep], domain[keep]
    n_users = int(user[-1]) + 1

    # days: a start and a span per user (recent years weigh more), a quarter on the previous review's day
    span = np.minimum(LAST_DAY - FIRST_DAY, np.floor(rng.lognormal(math.log(200), 1.5, n_users))).astype(np.int64)
    start = np.maximum(FIRST_DAY, LAST_DAY - span - np.floor(rng.exponential(1500, n_users)).astype(np.int64))
    day = start[user] + np.floor(rng.random(base) * (np.minimum(span, LAST_DAY - start)[user] + 1)).astype(np.int64)
    same = np.concatenate([[False], user[1:] == user[:-1]]) & (rng.random(base) < SAME_DAY_SHARE)
    source = np.maximum.accumulate(np.where(same, 0, np.arange(base)))
    day = day[source].astype(np.int32)

    # repeat pairs: the same user and item on another day
    again = rng.choice(base, size=repeats, replace=False)
    shift = rng.integers(1, 400, repeats) * rng.choice([-1, 1], repeats)
    user = np.concatenate([user, user[again]])
    item = np.concatenate([item, item[again]])
    domain = np.concatenate([domain, domain[again]])
    day = np.concatenate([day, np.clip(day[again] + shift, FIRST_DAY, LAST_DAY).astype(np.int32)])
    records = len(user)
    rating = rng.choice(np.arange(1, 6, dtype=np.int8), size=records, p=[0.07, 0.05, 0.08, 0.2, 0.6])
    sentences = np.clip(np.rint(rng.lognormal(math.log(REVIEW_SENTENCES), 0.8, records)), 1, 80).astype(np.int16)

    # lines: every record once, plus exact copies of random records
    line_record = np.concatenate([np.arange(records), rng.integers(0, records, exact)]).astype(np.int32)
    line_flag = np.zeros(events, np.int8)
    picked = rng.choice(
        events,
        size=round(MALFORMED_SHARE * events)
        + 2 * max(2, round(MISSING_USER_PER_MILLION * events / 1e6 / 2))
        + max(3, round(IMPOSSIBLE_TIME_PER_MILLION * events / 1e6)),
        replace=False,
    )
    n_bad = round(MALFORMED_SHARE * events)
    n_missing = 2 * max(2, round(MISSING_USER_PER_MILLION * events / 1e6 / 2))
    line_flag[picked[:n_bad]] = TRUNCATED
    line_flag[picked[n_bad : n_bad + n_missing // 2]] = NO_USER_KEY
    line_flag[picked[n_bad + n_missing // 2 : n_bad + n_missing]] = EMPTY_USER
    line_flag[picked[n_bad + n_missing :]] = BAD_TIME

    # metadata: none for 2% of the items outside each domain's top 1%; some untitled
    has_meta = np.ones(items, bool)
    for d in range(len(DOMAINS)):
        tail = rank_to_item[d][int(math.ceil(0.01 * n_items[d])) :]
        has_meta[rng.choice(tail, size=round(NO_METADATA_SHARE * n_items[d]), replace=False)] = False
    untitled = rng.random(items) < UNTITLED_SHARE
    return _World(
        domain_names=[name for name, _, _ in DOMAINS],
        item_domain=np.repeat(np.arange(len(DOMAINS), dtype=np.int8), n_items),
        item_offsets=item_offsets,
        has_meta=has_meta,
        untitled=untitled,
        user=user.astype(np.int32),
        item=item,
        domain=domain,
        day=day,
        rating=rating,
        sentences=sentences,
        line_record=line_record,
        line_flag=line_flag,
        users=n_users,
        base_events=base,
        repeat_pairs=repeats,
        exact_duplicates=exact,
    )


# ----------------------------------------------------------------------------- ids


def _user_ids(world: _World, layout: str, seed: int) -> pa.Array:
    u = np.arange(world.users, dtype=np.uint64)
    first = _codes(b"A", _hash(seed, 11, u), 13)  # 'A' + 13 base-36 digits of a bijection: unique
    if layout == "amazon2018":
        return first
    tail = _codes(b"", _hash(seed, 12, u) % np.uint64(36**12), 12)
    return _concat(first, tail, pc.utf8_slice_codeunits(first, 1, 3))  # 28 characters


def _item_ids(world: _World, variant: bool = False) -> pa.Array:
    """Books: ten-digit ISBN-like asins; other domains: 'B0' + 8 base-36 digits. Unique (bijections)."""
    i = np.arange(len(world.item_domain), dtype=np.uint64) + np.uint64(50_000_000 if variant else 0)
    isbn = _codes(b"", (i * np.uint64(7_919_111)) % np.uint64(10**10), 10, _ALNUM[:10])
    asin = _codes(b"B0", (i * np.uint64(1_000_000_007)) % np.uint64(36**8), 8)
    books = pa.array(world.item_domain == world.domain_names.index("Books"))
    return pc.if_else(books, isbn, asin) if not variant else asin


# ----------------------------------------------------------------------------- lines


def _reviews_chunk(con, world: _World, pools: _Pools, ids: dict, lines: np.ndarray, layout: str, seed: int) -> pa.Array:
    """The JSON text (each ending in a newline) of the review lines `lines`, in that order."""
    rec = world.line_record[lines].astype(np.int64)
    flag = world.line_flag[lines]
    h = _hash(seed, 21, rec)
    n_sent = world.sentences[rec].astype(np.int64)
    sentence_ids = _hash(seed, 22, np.repeat(rec, n_sent), _positions(n_sent))
    text = _join(pools.sentences, (sentence_ids % np.uint64(len(pools.sentences))).astype(np.int64), n_sent, " ")
    rating = world.rating[rec]
    star = _unit(_hash(seed, 23, rec)) < 0.3
    phrase = pc.take(pools.phrases, pa.array((h % np.uint64(len(pools.phrases))).astype(np.int64)))
    summary = pc.if_else(pa.array(star), pa.array(np.array(_STAR_WORDS)[rating - 1]).cast(pa.large_string()), phrase)
    user = world.user[rec]
    name_h = _hash(seed, 24, user)
    name = pc.take(pools.names, pa.array((name_h % np.uint64(len(pools.names))).astype(np.int64)))
    domain = world.domain_names[int(world.domain[rec[0]])]
    u = _unit(_hash(seed, 25, rec))
    styles = _STYLES.get(domain, _DEFAULT_STYLES)
    style = np.where(
        u < _STYLE_SHARE.get(domain, 0.3), np.array(styles)[(h >> np.uint64(20)) % np.uint64(len(styles))], None
    )
    vote = np.where(_unit(h) < 0.15, 2 + np.floor(_unit(_hash(seed, 26, rec)) ** 3 * 200), 0).astype(np.int64)
    table = pa.table(
        {
            "flag": flag,
            "cut": _unit(_hash(seed, 27, lines)),
            "rating": rating,
            "vote": vote,
            "verified": _unit(_hash(seed, 28, rec)) < 0.85,
            "day": world.day[rec],
            "user_id": pc.take(ids["user"], pa.array(user)),
            "asin": pc.take(ids["item"], pa.array(world.item[rec])),
            "variant": pc.take(ids["variant"], pa.array(world.item[rec])),
            "is_variant": _unit(_hash(seed, 29, world.item[rec])) < 0.3,
            "style": pa.array(style, pa.string()),
            "name": pc.if_else(pa.array(_unit(name_h) < 0.03), pa.scalar(None, pa.large_string()), name),
            "text": text,
            "no_text": _unit(_hash(seed, 30, rec)) < 0.002,
            "summary": summary,
            "image": _unit(_hash(seed, 31, rec)) < 0.02,
            "tod": (_hash(seed, 32, user, world.day[rec]) % np.uint64(86_400_000)).astype(np.int64)
            + np.where(u < 0.5, 0, (_hash(seed, 33, rec) % np.uint64(1_200_000)).astype(np.int64)),
            "hash": (h >> np.uint64(40)).astype(np.int64),
        }
    )
    con.register("chunk", table)
    if layout == "amazon2018":
        line = """
          '{"overall": ' || rating || '.0'
          || CASE WHEN vote > 0 THEN ', "vote": "' || vote || '"' ELSE '' END
          || ', "verified": ' || verified
          || ', "reviewTime": "' || strftime(DATE '1970-01-01' + day, '%m ') || day(DATE '1970-01-01' + day)
          || strftime(DATE '1970-01-01' + day, ', %Y"')
          || CASE flag WHEN 1 THEN '' WHEN 2 THEN ', "reviewerID": ""' ELSE ', "reviewerID": "' || user_id || '"' END
          || ', "asin": "' || asin || '"'
          || coalesce(', "style": ' || style, '')
          || coalesce(', "reviewerName": "' || name || '"', '')
          || CASE WHEN no_text THEN '' ELSE ', "reviewText": "' || text || '"' END
          || ', "summary": "' || summary || '"'
          || ', "unixReviewTime": ' || (day::BIGINT * 86400 * CASE WHEN flag = 3 THEN 1000 ELSE 1 END)
          || CASE WHEN image THEN ', "image": ["https://images-na.ssl-images-amazon.com/images/I/'
                  || hash || 'L._SY88.jpg"]' ELSE '' END
          || '}'
        """
    else:
        line = """
          '{"rating": ' || rating || '.0, "title": "' || summary || '"'
          || ', "text": "' || CASE WHEN no_text THEN '' ELSE text END || '"'
          || ', "images": ' || CASE WHEN image THEN '[{"small_image_url": "https://m.media-amazon.com/images/I/'
                  || hash || 'L._SL256_.jpg", "medium_image_url": "https://m.media-amazon.com/images/I/'
                  || hash || 'L._SL800_.jpg", "large_image_url": "https://m.media-amazon.com/images/I/'
                  || hash || 'L._SL1600_.jpg", "attachment_type": "IMAGE"}]' ELSE '[]' END
          || ', "asin": "' || CASE WHEN is_variant AND hash % 3 = 0 THEN variant ELSE asin END || '"'
          || ', "parent_asin": "' || asin || '"'
          || CASE flag WHEN 1 THEN '' WHEN 2 THEN ', "user_id": ""' ELSE ', "user_id": "' || user_id || '"' END
          || ', "timestamp": ' || ((day::BIGINT * 86400000 + tod) // CASE WHEN flag = 3 THEN 1000 ELSE 1 END)
          || ', "helpful_vote": ' || vote // 3
          || ', "verified_purchase": ' || verified || '}'
        """
    out = con.sql(
        f"SELECT CASE WHEN flag = {TRUNCATED} THEN left(l, 1 + floor(cut * 0.9 * length(l))::INT) ELSE l END"
        f" || chr(10) AS line FROM (SELECT flag, cut, {line} AS l FROM chunk)"
    ).to_arrow_table()
    con.unregister("chunk")
    return out.column(0)


def _metadata_chunk(
    con,
    world: _World,
    pools: _Pools,
    ids: dict,
    rows: np.ndarray,
    second: np.ndarray,
    truncated: np.ndarray,
    layout: str,
    seed: int,
) -> pa.Array:
    """JSON text of metadata lines of the items `rows` (`second`: a second line, with another title)."""
    item = rows.astype(np.int64)
    dom = world.item_domain[item]
    h = _hash(seed, 41, item)
    salt = np.where(second, 1, 0).astype(np.uint64)
    # titles: brand (sometimes), 2-9 words, a domain noun, sometimes a colour
    brand_ix = (_hash(seed, 42, item) % np.uint64(len(pools.brands))).astype(np.int64)
    brand = pc.take(pools.brands, pa.array(brand_ix))
    n_words = 2 + (_hash(seed, 43, item, salt) % np.uint64(8)).astype(np.int64)
    word_ix = _hash(seed, 44, np.repeat(item, n_words), _positions(n_words), np.repeat(salt, n_words))
    words = _join(pools.words, (word_ix % np.uint64(len(pools.words))).astype(np.int64), n_words, " ")
    nouns = np.array(
        [
            _NOUNS[world.domain_names[d]][int(x) % len(_NOUNS[world.domain_names[d]])]
            for d, x in zip(dom, h >> np.uint64(8))
        ]
    )
    u = _unit(_hash(seed, 45, item, salt))
    colour = np.where(u < 0.3, np.char.add(", ", np.array(_COLORS)[(h >> np.uint64(16)) % np.uint64(len(_COLORS))]), "")
    branded = pc.if_else(pa.array(u > 0.6), _concat(brand, " "), pa.scalar("", pa.large_string()))
    title = _concat(branded, words, pa.array(np.char.add(np.char.add(" ", nouns), colour).tolist()))
    quirk = _unit(_hash(seed, 46, item))
    title = pc.if_else(pa.array(quirk < 0.01), pc.replace_substring(title, " ", " &amp; ", max_replacements=1), title)
    title = pc.if_else(pa.array((quirk >= 0.01) & (quirk < 0.015)), _concat('\\"', title, '\\" '), title)
    title = pc.if_else(
        pa.array((quirk >= 0.015) & (quirk < 0.02)), _concat("  ", title, " Caf\\u00e9  Edition "), title
    )
    untitled = world.untitled[item] & ~second
    untitled_value = np.array(_UNTITLED, dtype=object)[(h >> np.uint64(24)) % np.uint64(len(_UNTITLED))]
    title_json = pc.if_else(
        pa.array(untitled),
        pa.array(untitled_value.tolist(), pa.large_string()),
        _concat('"', title, '"'),
    )
    # category paths: a per-domain tree; some empty, some with a trailing blank element or junk
    paths = [
        json.dumps(
            [
                DOMAINS[d][2]
                if layout == "amazon2023"
                else world.domain_names[d].replace("_and_", " & ").replace("_", " ")
            ]
            + p
        )[1:-1]
        for d in range(len(DOMAINS))
        for p in pools.categories[world.domain_names[d]]
    ]
    per_domain = len(pools.categories[world.domain_names[0]])
    path_ix = dom.astype(np.int64) * per_domain + ((h >> np.uint64(32)) % np.uint64(per_domain)).astype(np.int64)
    cu = _unit(_hash(seed, 47, item))
    empty_share = 0.3 if layout == "amazon2023" else 0.03
    category = np.where(cu < empty_share, "[]", np.char.add(np.char.add("[", np.array(paths)[path_ix]), "]"))
    category = np.where(
        (cu >= empty_share) & (cu < empty_share + 0.01), np.char.replace(category, "]", ', ""]'), category
    )
    category = np.where(
        (cu >= empty_share + 0.01) & (cu < empty_share + 0.015),
        np.char.replace(category, "]", ', "</span></span></span>"]'),
        category,
    )
    n_desc = (_hash(seed, 48, item) % np.uint64(4)).astype(np.int64)
    desc_ix = (
        _hash(seed, 49, np.repeat(item, n_desc * 3), _positions(n_desc * 3)) % np.uint64(len(pools.sentences))
    ).astype(np.int64)
    description = _join(pools.sentences, desc_ix, n_desc * 3, " ")
    n_feat = (_hash(seed, 50, item) % np.uint64(6)).astype(np.int64)
    feat_ix = (_hash(seed, 51, np.repeat(item, n_feat), _positions(n_feat)) % np.uint64(len(pools.phrases))).astype(
        np.int64
    )
    features = _join(pools.phrases, feat_ix, n_feat, '", "')
    lo, hi = world.item_offsets[dom], world.item_offsets[dom + 1]
    n_also = np.where(_unit(_hash(seed, 52, item)) < 0.5, 0, (_hash(seed, 53, item) % np.uint64(25)).astype(np.int64))
    also_ix = np.repeat(lo, n_also) + (
        _hash(seed, 54, np.repeat(item, n_also), _positions(n_also)) % np.repeat((hi - lo).astype(np.uint64), n_also)
    ).astype(np.int64)
    also = _join(ids["item"], also_ix, n_also, '", "')
    bu = _unit(_hash(seed, 55, item))
    table = pa.table(
        {
            "truncated": truncated,
            "cut": _unit(_hash(seed, 56, item, salt)),
            "title": title_json,
            "brand": brand,
            "brand_kind": np.where(bu < 0.8, 0, np.where(bu < 0.85, 1, np.where(bu < 0.925, 2, 3))).astype(np.int8),
            "category": pa.array(category.tolist(), pa.large_string()),
            "description": description,
            "n_desc": n_desc,
            "features": features,
            "n_feat": n_feat,
            "also": also,
            "n_also": n_also,
            "asin": pc.take(ids["item"], pa.array(item)),
            "price": (h >> np.uint64(44)) % np.uint64(20000),
            "rank": (h >> np.uint64(20)) % np.uint64(3_000_000),
            "main": pa.array([DOMAINS[d][2] for d in dom], pa.large_string()),
            "day": (FIRST_DAY - 2000 + (h >> np.uint64(12)) % np.uint64(LAST_DAY - FIRST_DAY + 2000)).astype(np.int32),
            "hash": (h >> np.uint64(40)).astype(np.int64),
        }
    )
    con.register("chunk", table)
    if layout == "amazon2018":
        # brand_kind: 0 a brand, 1 "", 2-3 key absent
        line = """
          '{"category": ' || category || ', "tech1": ""'
          || ', "description": ' || CASE WHEN n_desc = 0 THEN '[]' ELSE '["' || description || '"]' END
          || ', "fit": ""'
          || coalesce(', "title": ' || title, '')
          || ', "also_buy": ' || CASE WHEN n_also = 0 THEN '[]' ELSE '["' || also || '"]' END
          || ', "tech2": ""'
          || CASE brand_kind WHEN 0 THEN ', "brand": "' || brand || '"' WHEN 1 THEN ', "brand": ""' ELSE '' END
          || ', "feature": ' || CASE WHEN n_feat = 0 THEN '[]' ELSE '["' || features || '"]' END
          || ', "rank": "' || format('{:,}', rank) || ' in ' || main || ' ("'
          || ', "also_view": ' || CASE WHEN n_also < 10 THEN '[]' ELSE '["' || also || '"]' END
          || ', "main_cat": "' || main || '", "similar_item": ""'
          || ', "date": "' || strftime(DATE '1970-01-01' + day, '%B %-d, %Y') || '"'
          || ', "price": ' || CASE WHEN price % 5 = 0 THEN '""' ELSE '"$' || (price // 100) || '.'
                                   || lpad((price % 100)::VARCHAR, 2, '0') || '"' END
          || ', "asin": "' || asin || '"'
          || ', "imageURL": ["https://images-na.ssl-images-amazon.com/images/I/' || hash || 'L._SS40_.jpg"]'
          || ', "imageURLHighRes": ["https://images-na.ssl-images-amazon.com/images/I/' || hash || 'L.jpg"]}'
        """
    else:
        # brand_kind: 0 store, 1 store null + details.Brand, 2-3 store null and no brand
        line = """
          '{"main_category": "' || main || '"'
          || ', "title": ' || coalesce(title, 'null')
          || ', "average_rating": ' || (10 + hash % 41) / 10.0
          || ', "rating_number": ' || (hash % 5000)
          || ', "features": ' || CASE WHEN n_feat = 0 THEN '[]' ELSE '["' || features || '"]' END
          || ', "description": ' || CASE WHEN n_desc = 0 THEN '[]' ELSE '["' || description || '"]' END
          || ', "price": ' || CASE WHEN price % 3 = 0 THEN 'null' ELSE (price / 100.0)::VARCHAR END
          || ', "images": [{"thumb": "https://m.media-amazon.com/images/I/' || hash || 'L._SS40_.jpg"'
          || ', "large": "https://m.media-amazon.com/images/I/' || hash || 'L.jpg", "variant": "MAIN"'
          || ', "hi_res": "https://m.media-amazon.com/images/I/' || hash || 'L._SL1500_.jpg"}]'
          || ', "videos": []'
          || ', "store": ' || CASE WHEN brand_kind = 0 THEN '"' || brand || '"' ELSE 'null' END
          || ', "categories": ' || category
          || ', "details": {"Date First Available": "' || strftime(DATE '1970-01-01' + day, '%B %-d, %Y') || '"'
          || CASE WHEN brand_kind = 1 THEN ', "Brand": "' || brand || '"' ELSE '' END
          || ', "Manufacturer": "' || brand || '"}'
          || ', "parent_asin": "' || asin || '"'
          || ', "bought_together": null}'
        """
    out = con.sql(
        "SELECT CASE WHEN truncated THEN left(l, 1 + floor(cut * 0.9 * length(l))::INT) ELSE l END"
        f" || chr(10) AS line FROM (SELECT truncated, cut, {line} AS l FROM chunk)"
    ).to_arrow_table()
    con.unregister("chunk")
    return out.column(0)


def _write(path: Path, chunks) -> tuple[int, int]:
    """Writes the chunks' text through gzip; returns (raw bytes, gzip bytes)."""
    raw = 0
    with open(path, "wb") as file, gzip.GzipFile(fileobj=file, mode="wb", compresslevel=GZIP_LEVEL, mtime=0) as gz:
        for column in chunks:
            for array in column.chunks:
                buffers = array.buffers()
                dtype = np.int64 if pa.types.is_large_string(array.type) else np.int32
                offsets = np.frombuffer(buffers[1], dtype)[array.offset : array.offset + len(array) + 1]
                gz.write(memoryview(buffers[2])[int(offsets[0]) : int(offsets[-1])])
                raw += int(offsets[-1] - offsets[0])
    return raw, path.stat().st_size


# ----------------------------------------------------------------------------- the entry point


def generate(out_dir: str | Path, events: int, layout: str = "amazon2018", seed: int = 0, threads: int = 2) -> dict:
    """Writes a world of `events` review lines in `layout` to `out_dir`; returns its profile.

    Skips the work (and returns the stored profile) when `out_dir/_DONE` exists.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    out = Path(out_dir)
    if (out / "_DONE").exists():
        return json.loads((out / "_profile.json").read_text())
    start = time.perf_counter()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    world = _world(events, seed)
    pools = _pools(seed)
    ids = {"user": _user_ids(world, layout, seed), "item": _item_ids(world), "variant": _item_ids(world, True)}
    rng = np.random.default_rng([seed, 2])
    suffix = ".json.gz" if layout == "amazon2018" else ".jsonl.gz"
    con = duckdb.connect(config={"threads": 1, "preserve_insertion_order": True})
    lock = threading.Lock()
    sizes: dict[str, tuple[int, int]] = {}

    # review files: 2018 dumps are grouped by item, 2023 ones by user; an exact copy sits next to its original
    line_domain = world.domain[world.line_record]
    tasks = []
    for d, name in enumerate(world.domain_names):
        lines = np.flatnonzero(line_domain == d)
        rec = world.line_record[lines]
        keys = (world.day[rec], world.item[rec]) if layout == "amazon2018" else (world.day[rec], world.user[rec])
        lines = lines[np.lexsort((rec, *keys))]  # the last key sorts first

        def reviews(lines=lines):
            cur = con.cursor()
            for i in range(0, len(lines), CHUNK_LINES):
                yield _reviews_chunk(cur, world, pools, ids, lines[i : i + CHUNK_LINES], layout, seed)

        tasks.append((len(lines), f"{name}{suffix}", reviews))

    # metadata files: every item with metadata once, in a random order, plus the second and cross-domain lines
    items = len(world.item_domain)
    second_items = rng.choice(items, size=round(SECOND_METADATA_SHARE * items), replace=False)
    cross_items = rng.choice(items, size=round(CROSS_DOMAIN_METADATA_SHARE * items), replace=False)
    cross_domain = (world.item_domain[cross_items] + rng.integers(1, len(DOMAINS), len(cross_items))) % len(DOMAINS)
    meta_counts = {}
    for d, name in enumerate(world.domain_names):
        own = np.flatnonzero(world.has_meta & (world.item_domain == d))
        extra_second = second_items[(world.item_domain[second_items] == d) & world.has_meta[second_items]]
        extra_cross = cross_items[(cross_domain == d) & world.has_meta[cross_items]]
        rows = np.concatenate([own, extra_second, extra_cross])
        second = np.concatenate([np.zeros(len(own), bool), np.ones(len(extra_second) + len(extra_cross), bool)])
        order = rng.permutation(len(rows))
        rows, second = rows[order], second[order]
        truncated = rng.random(len(rows)) < MALFORMED_METADATA_SHARE
        meta_counts[name] = {
            "lines": len(rows),
            "second_lines": len(extra_second) + len(extra_cross),
            "truncated": int(truncated.sum()),
        }

        def metadata(rows=rows, second=second, truncated=truncated):
            cur = con.cursor()
            for i in range(0, len(rows), CHUNK_LINES):
                s = slice(i, i + CHUNK_LINES)
                yield _metadata_chunk(cur, world, pools, ids, rows[s], second[s], truncated[s], layout, seed)

        tasks.append((len(rows) * 2, f"meta_{name}{suffix}", metadata))

    def run(task):
        _, filename, chunks = task
        result = _write(out / filename, chunks())
        with lock:
            sizes[filename] = result

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        list(pool.map(run, sorted(tasks, key=lambda t: -t[0])))
    profile = _profile(world, layout, seed, sizes, meta_counts)
    profile["seconds"] = round(time.perf_counter() - start, 1)
    (out / "_profile.json").write_text(json.dumps(profile, indent=2) + "\n")
    (out / "_DONE").write_text("")
    return profile


def _profile(world: _World, layout: str, seed: int, sizes: dict, meta_counts: dict) -> dict:
    lines = len(world.line_record)
    item_of_line = world.item[world.line_record]
    counts = np.bincount(item_of_line, minlength=len(world.item_domain))
    reviewed = np.sort(counts[counts > 0])[::-1]
    top = max(1, round(0.01 * len(reviewed)))
    activity = np.bincount(world.user[world.line_record])
    activity = activity[activity > 0]
    key = world.user.astype(np.int64) * (LAST_DAY + 1) + world.day
    _, per_day = np.unique(key[: world.base_events], return_counts=True)
    review_files = [f for f in sizes if not f.startswith("meta_")]
    raw_reviews = sum(sizes[f][0] for f in review_files)
    flags = np.bincount(world.line_flag, minlength=5)
    return {
        "layout": layout,
        "seed": seed,
        "events": lines,
        "users": int(len(activity)),
        "user_events": {
            "mean": round(float(activity.mean()), 2),
            "median": float(np.median(activity)),
            "p99": float(np.percentile(activity, 99)),
            "max": int(activity.max()),
        },
        "items": int(len(world.item_domain)),
        "items_with_events": int(len(reviewed)),
        "top_1pct_items_event_share": round(float(reviewed[:top].sum() / lines), 3),
        "items_without_metadata": int((~world.has_meta).sum()),
        "events_on_items_without_metadata_share": round(float((~world.has_meta[item_of_line]).mean()), 4),
        "untitled_items": int((world.untitled & world.has_meta).sum()),
        "duplicate_share": round((world.exact_duplicates + world.repeat_pairs) / lines, 4),
        "exact_duplicate_lines": world.exact_duplicates,
        "repeat_pair_lines": world.repeat_pairs,
        "same_user_day_share": round(float(per_day[per_day > 1].sum() / world.base_events), 3),
        "malformed_lines": int(flags[TRUNCATED]),
        "missing_user_lines": int(flags[NO_USER_KEY] + flags[EMPTY_USER]),
        "impossible_timestamp_lines": int(flags[BAD_TIME]),
        "domains": {
            name: {
                "events": int((world.domain[world.line_record] == d).sum()),
                "items": int((world.item_domain == d).sum()),
                "metadata": meta_counts[name],
            }
            for d, name in enumerate(world.domain_names)
        },
        "review_bytes": raw_reviews,
        "review_bytes_per_line": round(raw_reviews / lines, 1),
        "review_gzip_bytes": sum(sizes[f][1] for f in review_files),
        "metadata_bytes": sum(v[0] for f, v in sizes.items() if f.startswith("meta_")),
        "metadata_gzip_bytes": sum(v[1] for f, v in sizes.items() if f.startswith("meta_")),
        "gzip_bytes": sum(v[1] for v in sizes.values()),
    }


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--layout", choices=LAYOUTS, default="amazon2018")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="files written at once")
    args = parser.parse_args()
    print(json.dumps(generate(args.out_dir, args.events, args.layout, args.seed, args.threads), indent=2))
