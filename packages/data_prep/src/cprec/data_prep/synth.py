"""The embedded default world (`cprec data synth`): a generated two-platform log in the real source formats.

A marketplace platform (Amazon Reviews 2023 layout, 7 pre-training + 4 downstream domains) and a
retail platform (the Online Retail CSV, its own customers and catalogue). Items are described by
latent attributes (price tier, colour, style, material, theme) whose words are shared by every
domain and both platforms, plus domain nouns. Users have lasting tastes over those attributes that
drift over their history, and a short-term state that follows what they just chose in any domain;
each choice is drawn from a softmax over the domain's catalogue. docs/world.md tells the story and
why each knob is there. Generation is vectorised over users (one numpy step per event position),
and the files are written by DuckDB, so millions of events take minutes.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from cprec.core import storage
from cprec.core.config import option, to_dict
from cprec.core.errors import CPRecError
from cprec.core.template import TEMPLATE_VERSION

# ----------------------------------------------------------------------------- vocabulary

# Attribute groups shared across all domains and both platforms; each item takes one value per group.
ATTRIBUTES: dict[str, list[str]] = {
    "tier": ["Basic", "Select", "Premium", "Luxury"],
    "color": ["Crimson", "Navy", "Sage", "Ivory", "Charcoal", "Mustard", "Teal", "Blush", "Olive", "Cobalt",
              "Terracotta", "Lavender"],
    "style": ["Vintage", "Minimalist", "Rustic", "Modern", "Bohemian", "Classic", "Industrial", "Coastal",
              "Scandinavian", "Retro"],
    "material": ["Linen", "Leather", "Cotton", "Bamboo", "Wool", "Canvas", "Velvet", "Walnut", "Copper", "Marble"],
    "theme": ["Floral", "Nautical", "Woodland", "Geometric", "Celestial", "Safari", "Botanical", "Tropical",
              "Alpine", "Desert", "Paisley", "Tartan"],
}  # fmt: skip
# Seasonal palettes and motifs (peak as a fraction of the year): what shops push, and people buy,
# changes with the season — pastels and florals in spring, tartan and alpine motifs in winter.
SEASON_PEAKS = {"spring": 0.29, "summer": 0.54, "autumn": 0.79, "winter": 0.04}
SEASONAL: dict[str, dict[str, list[str]]] = {
    "color": {"spring": ["Blush", "Lavender", "Sage"], "summer": ["Teal", "Cobalt", "Navy"],
              "autumn": ["Terracotta", "Mustard", "Olive"], "winter": ["Crimson", "Charcoal", "Ivory"]},
    "theme": {"spring": ["Floral", "Botanical", "Paisley"], "summer": ["Nautical", "Tropical", "Desert"],
              "autumn": ["Woodland", "Safari", "Geometric"], "winter": ["Alpine", "Celestial", "Tartan"]},
}  # fmt: skip
SEASON_SHARPNESS = 2.0  # in-season values weigh e^2 ~ 7x a value a quarter-year off, e^4 ~ 55x the opposite season
GROUPS = list(ATTRIBUTES)
GROUP_SIZES = np.array([len(v) for v in ATTRIBUTES.values()])
GROUP_OFFSETS = np.concatenate([[0], np.cumsum(GROUP_SIZES)[:-1]])
FEATURES = int(GROUP_SIZES.sum())
UNWRITTEN_DIMS = 8  # latent qualities per item that no text names (unwritten_taste)
TIER_PRICE = np.array([0.6, 1.0, 1.6, 2.6])


def _season_peaks() -> np.ndarray:
    """(FEATURES,) the peak of each seasonal attribute value as a year fraction; NaN for the rest."""
    peaks = np.full(FEATURES, np.nan, np.float32)
    for group, seasons in SEASONAL.items():
        offset = GROUP_OFFSETS[GROUPS.index(group)]
        for season, values in seasons.items():
            for value in values:
                peaks[offset + ATTRIBUTES[group].index(value)] = SEASON_PEAKS[season]
    return peaks


SEASON_PEAK = _season_peaks()


@dataclass(frozen=True)
class DomainSpec:
    name: str
    main_category: str  # Amazon's `main_category`
    top_category: str  # first entry of `categories`
    base_price: float
    title: str  # format string over {tier} {color} {style} {material} {theme} {noun}
    nouns: tuple[tuple[str, str], ...]  # (noun, leaf category)


_GENERIC = "{tier} {style} {color} {material} {noun}, {theme} Pattern"
PRETRAIN_DOMAINS = [
    DomainSpec("Books", "Books", "Books", 14.0, "{theme} {noun}: {style} {color} Edition ({tier} {material} Cover)", (
        ("Cookbook", "Cookbooks"), ("Mystery Novel", "Mystery"), ("Poetry Collection", "Poetry"),
        ("Travel Guide", "Travel"), ("Picture Book", "Children's Books"), ("Gardening Guide", "Gardening"),
        ("Art Book", "Arts & Photography"), ("Craft Handbook", "Crafts & Hobbies"),
        ("Fantasy Novel", "Science Fiction & Fantasy"), ("Memoir", "Biographies & Memoirs"))),
    DomainSpec("Electronics", "All Electronics", "Electronics", 35.0,
               "{tier} {noun} - {style} {color} {material} Finish, {theme} Design", (
        ("Bluetooth Speaker", "Portable Speakers"), ("Phone Case", "Cases"), ("Headphones", "Over-Ear Headphones"),
        ("Charging Dock", "Chargers"), ("Laptop Sleeve", "Laptop Sleeves"), ("Desk Lamp", "Lamps"),
        ("Smartwatch Band", "Smartwatch Bands"), ("Keyboard", "Keyboards"), ("Mouse Pad", "Mouse Pads"),
        ("Cable Organizer", "Cable Management"))),
    DomainSpec("Home_and_Kitchen", "Amazon Home", "Home & Kitchen", 25.0, _GENERIC, (
        ("Throw Pillow", "Throw Pillows"), ("Duvet Cover", "Duvet Covers"), ("Coffee Mug", "Mugs"),
        ("Table Runner", "Table Runners"), ("Wall Clock", "Wall Clocks"), ("Serving Bowl", "Serving Bowls"),
        ("Candle Holder", "Candleholders"), ("Bath Towel Set", "Bath Towels"), ("Storage Basket", "Storage Baskets"),
        ("Cutting Board", "Cutting Boards"))),
    DomainSpec("Clothing_Shoes_and_Jewelry", "AMAZON FASHION", "Clothing, Shoes & Jewelry", 30.0,
               "{tier} {style} {material} {noun} in {color} - {theme} Print", (
        ("Cardigan", "Cardigans"), ("Scarf", "Scarves"), ("Tote Bag", "Totes"), ("Sneakers", "Sneakers"),
        ("Pendant Necklace", "Pendants"), ("Rain Jacket", "Raincoats"), ("Wallet", "Wallets"),
        ("Beanie", "Skullies & Beanies"), ("Dress", "Casual Dresses"), ("Watch", "Wrist Watches"))),
    DomainSpec("Sports_and_Outdoors", "Sports & Outdoors", "Sports & Outdoors", 28.0, _GENERIC, (
        ("Yoga Mat", "Yoga Mats"), ("Water Bottle", "Water Bottles"), ("Camping Blanket", "Camping Blankets"),
        ("Daypack", "Daypacks"), ("Hammock", "Hammocks"), ("Resistance Bands", "Resistance Bands"),
        ("Picnic Cooler", "Coolers"), ("Trekking Poles", "Trekking Poles"), ("Camp Mug", "Camping Mugs"),
        ("Gym Towel", "Towels"))),
    DomainSpec("Toys_and_Games", "Toys & Games", "Toys & Games", 22.0,
               "{theme} {noun} for Kids - {tier} {style} {color} {material}", (
        ("Jigsaw Puzzle", "Jigsaw Puzzles"), ("Plush Toy", "Stuffed Animals"), ("Board Game", "Board Games"),
        ("Building Set", "Building Sets"), ("Kite", "Kites"), ("Play Tent", "Play Tents"),
        ("Dollhouse", "Dollhouses"), ("Card Game", "Card Games"), ("Wooden Train Set", "Train Sets"),
        ("Art Kit", "Craft Kits"))),
    DomainSpec("Beauty_and_Personal_Care", "All Beauty", "Beauty & Personal Care", 12.0, _GENERIC, (
        ("Makeup Bag", "Cosmetic Bags"), ("Hair Brush", "Hair Brushes"), ("Hand Cream", "Hand Creams"),
        ("Nail Polish Set", "Nail Polish"), ("Bath Bomb Set", "Bath Bombs"), ("Perfume", "Eau de Parfum"),
        ("Lip Balm Set", "Lip Balms"), ("Compact Mirror", "Compact Mirrors"), ("Hair Clip Set", "Hair Clips"),
        ("Soap Bar", "Bar Soaps"))),
]  # fmt: skip
DOWNSTREAM_DOMAINS = [
    DomainSpec("Office_Products", "Office Products", "Office Products", 10.0, _GENERIC, (
        ("Notebook", "Notebooks"), ("Desk Organizer", "Desk Organizers"), ("Pen Set", "Pens"),
        ("Planner", "Planners"), ("File Folder Set", "File Folders"), ("Pencil Case", "Pencil Cases"),
        ("Bookends", "Bookends"), ("Sticky Notes", "Sticky Notes"), ("Desk Pad", "Desk Pads"),
        ("Letter Tray", "Letter Trays"))),
    DomainSpec("Pet_Supplies", "Pet Supplies", "Pet Supplies", 18.0,
               "{tier} {noun} - {style} {color} {material}, {theme} Pattern", (
        ("Dog Collar", "Collars"), ("Cat Bed", "Beds"), ("Pet Bowl", "Bowls"), ("Leash", "Leashes"),
        ("Dog Sweater", "Sweaters"), ("Cat Scratcher", "Scratchers"), ("Pet Blanket", "Blankets"),
        ("Rope Toy", "Rope Toys"), ("Pet Carrier", "Carriers"), ("Feeding Mat", "Feeding Mats"))),
    DomainSpec("Garden_and_Outdoor", "Amazon Home", "Patio, Lawn & Garden", 24.0, _GENERIC, (
        ("Planter", "Planters"), ("Garden Gloves", "Gloves"), ("Watering Can", "Watering Cans"),
        ("Bird Feeder", "Bird Feeders"), ("Wind Chime", "Wind Chimes"), ("Outdoor Cushion", "Cushions"),
        ("Garden Flag", "Garden Flags"), ("Solar Lantern", "Lanterns"), ("Hand Tool Set", "Hand Tools"),
        ("Doormat", "Doormats"))),
    DomainSpec("Arts_Crafts_and_Sewing", "Arts, Crafts & Sewing", "Arts, Crafts & Sewing", 15.0, _GENERIC, (
        ("Sketchbook", "Sketchbooks"), ("Yarn Bundle", "Yarn"), ("Fabric Bundle", "Quilting Fabric"),
        ("Paint Set", "Paint Sets"), ("Washi Tape", "Decorative Tape"), ("Embroidery Kit", "Embroidery Kits"),
        ("Sewing Box", "Sewing Baskets"), ("Brush Set", "Brushes"), ("Stamp Set", "Stamps"),
        ("Craft Ribbon", "Ribbons"))),
]  # fmt: skip
RETAIL_NOUNS = ["T-LIGHT HOLDER", "CUSHION COVER", "LUNCH BAG", "MUG", "TEA TOWEL", "DOORSTOP", "BUNTING",
                "PHOTO FRAME", "JEWELLERY BOX", "NOTEBOOK", "CAKE TIN", "HOT WATER BOTTLE", "STORAGE JAR",
                "WALL CLOCK", "GIFT WRAP"]  # fmt: skip
RETAIL_GROUPS = (
    "color",
    "style",
    "theme",
    "material",
)  # the description's words; price tier is only in UnitPrice
RETAIL_PRICES = np.array([0.85, 1.65, 2.95, 4.95])  # UnitPrice (GBP) by tier
RETAIL_COUNTRIES = ["United Kingdom"] * 18 + ["Germany", "France", "EIRE", "Netherlands", "Spain", "Belgium"]
RETAIL_DOMAIN = "Online_Retail"
FIRST_INVOICE = 536365
FIRST_CUSTOMER = 12346

_BRAND_HEADS = ["North", "Hearth", "Blue", "Silver", "Bright", "Maple", "Stone", "River", "Sun", "Iron", "Cedar",
                "Willow", "Harbor", "Aspen", "Ember", "Golden", "Pine", "Fox", "Meadow", "Summit"]  # fmt: skip
_BRAND_TAILS = [
    "wind",
    "line",
    "craft",
    "works",
    "field",
    "haven",
    "ware",
    "nest",
    "lane",
    "smith",
    "mark",
    "goods",
]
_REVIEW_TITLES = {
    5: ["Five Stars", "Love it", "Perfect", "Exactly what I wanted", "Beautiful"],
    4: ["Very nice", "Good quality", "Pretty good", "Nice find"],
    3: ["It's okay", "Average", "Decent for the price"],
    2: ["Disappointed", "Not great"],
    1: ["Returned it", "Poor quality", "Do not buy"],
}
REVIEW_VARIANTS = 6
_REVIEW_VERDICTS = {
    5: "is just right",
    4: "works well",
    3: "is fine",
    2: "looks cheaper than shown",
    1: "fell apart",
}
# Real Amazon rating shares (1..5 stars), assigned by how well an item fits the user's lasting taste.
_RATING_SHARES = np.array([0.10, 0.05, 0.08, 0.17, 0.60])


# ----------------------------------------------------------------------------- config


@dataclass
class SynthConfig:
    out_dir: str = option("world", help="where to write the world (local path or s3://, gs://)")
    seed: int = option(0, help="random seed; the same seed and sizes give byte-identical files")
    users: int = option(3000, help="marketplace users")
    items_per_domain: int = option(200, help="catalogue size of each of the 11 marketplace domains")
    events_per_user: float = option(
        40.0, help="mean marketplace events per user, across domains (long-tailed)"
    )
    min_events_per_user: int = option(8, help="fewest marketplace events of a user")
    domains_per_user: float = option(4.0, help="mean number of marketplace domains a user is active in")
    downstream_activity: float = option(
        0.6, help="how likely a downstream domain is among a user's domains, relative to a pre-training one"
    )
    domain_stickiness: float = option(0.3, help="chance that an event stays in the previous event's domain")
    retail_users: int = option(1000, help="retail-platform customers (their own population)")
    retail_items: int = option(300, help="retail catalogue size")
    invoices_per_customer: float = option(6.0, help="mean invoices per retail customer (geometric)")
    items_per_invoice: float = option(4.0, help="mean distinct products per invoice")
    looks: int = option(
        12, help="coherent attribute bundles ('looks') shared by items and tastes on both platforms"
    )
    look_coherence: float = option(
        0.95, help="chance that an item's attribute value follows its look (else uniform)"
    )
    taste_concentration: float = option(
        0.1, help="Dirichlet concentration of users' mix of looks and personal quirks (lower = pickier)"
    )
    personal_taste: float = option(
        0.1, help="share of personal, look-independent preferences in a user's taste"
    )
    taste_weight: float = option(
        2.0, help="how strongly choices follow the attribute preferences (inverse temperature)"
    )
    recency_weight: float = option(
        0.35,
        help="share of the short-term state (attributes of recent choices, any domain) in the preference",
    )
    recency_decay: float = option(
        0.5, help="how fast the short-term state moves to the latest choice (1 = only it)"
    )
    seasonal_weight: float = option(
        0.5,
        help="share of the season's palette and motifs in the colour and theme preference (0 = no seasons)",
    )
    drift: float = option(0.3, help="how far lasting taste moves from a user's first to last event (0..1)")
    unwritten_taste: float = option(
        0.0,
        help="weight of a taste for qualities no item text shows (a latent user-item affinity, shared across "
        "domains): what only behaviour reveals, as co-purchases do in real logs; 0 = choices follow the words",
    )
    pretrain_popularity_skew: float = option(
        0.3, help="std of log item appeal in pre-training domains (mild)"
    )
    downstream_popularity_skew: float = option(
        1.0, help="std of log item appeal in downstream domains and retail"
    )
    retail_cancel_rate: float = option(0.02, help="share of retail lines later cancelled ('C' invoices)")
    retail_guest_rate: float = option(0.03, help="extra retail lines from guest checkouts without CustomerID")
    start_date: str = option("2019-01-01", help="marketplace log start (UTC date)")
    end_date: str = option("2023-06-30", help="marketplace log end (UTC date)")
    gzip: bool = option(
        True, help="gzip the marketplace JSONL files (the retail CSV is plain, like the real one)"
    )

    def validate(self) -> None:
        positive = ["users", "items_per_domain", "retail_users", "retail_items", "min_events_per_user"]
        for name in positive:
            if getattr(self, name) < 1:
                raise CPRecError(f"synth: {name} must be at least 1 (got {getattr(self, name)})")
        if self.events_per_user < self.min_events_per_user:
            raise CPRecError("synth: events_per_user must be at least min_events_per_user")
        if self.invoices_per_customer < 1 or self.items_per_invoice < 1 or self.domains_per_user < 1:
            raise CPRecError(
                "synth: invoices_per_customer, items_per_invoice and domains_per_user must be >= 1"
            )
        for name in [
            "domain_stickiness",
            "recency_weight",
            "seasonal_weight",
            "drift",
            "retail_cancel_rate",
            "retail_guest_rate",
        ]:
            if not 0 <= getattr(self, name) <= 1:
                raise CPRecError(f"synth: {name} must be within [0, 1] (got {getattr(self, name)})")
        if not 0 < self.recency_decay <= 1:
            raise CPRecError(f"synth: recency_decay must be within (0, 1] (got {self.recency_decay})")
        if self.looks < 1 or not 0 <= self.look_coherence <= 1 or not 0 <= self.personal_taste <= 1:
            raise CPRecError("synth: looks must be >= 1; look_coherence and personal_taste within [0, 1]")
        if self.taste_concentration <= 0 or self.taste_weight < 0 or self.downstream_activity < 0:
            raise CPRecError("synth: taste_concentration must be > 0; taste_weight, downstream_activity >= 0")
        if self.unwritten_taste < 0:
            raise CPRecError(f"synth: unwritten_taste must be >= 0 (got {self.unwritten_taste})")
        if _epoch_ms(self.start_date) >= _epoch_ms(self.end_date):
            raise CPRecError(f"synth: start_date {self.start_date} is not before end_date {self.end_date}")

    @classmethod
    def smoke(cls, out_dir: str, seed: int = 0, **overrides: Any) -> SynthConfig:
        """A few hundred users: a world small enough for CI runs of every stage."""
        sizes = {
            "users": 300,
            "items_per_domain": 60,
            "events_per_user": 30,
            "retail_users": 150,
            "retail_items": 80,
        }
        return cls(out_dir=out_dir, seed=seed, **{**sizes, **overrides})


def _epoch_ms(date: str) -> int:
    try:
        return int(datetime.fromisoformat(date).replace(tzinfo=UTC).timestamp() * 1000)
    except ValueError:
        raise CPRecError(f"synth: {date!r} is not an ISO date (YYYY-MM-DD)") from None


# ----------------------------------------------------------------------------- catalogues


@dataclass
class Catalog:
    """One domain's items: attribute values per group (-1 = not part of the item's text), appeal, ids."""

    domain: str
    attributes: np.ndarray  # (items, groups) int
    nouns: np.ndarray  # (items,) index into the domain's nouns
    log_appeal: np.ndarray  # (items,) item-level popularity, log scale
    tiers: np.ndarray  # (items,) price tier, also where the text does not show it
    offset: int = 0  # global index of the first item
    unwritten: np.ndarray | None = None  # (items, UNWRITTEN_DIMS) qualities no text shows (unwritten_taste > 0)

    @property
    def size(self) -> int:
        return len(self.nouns)

    def features(self) -> np.ndarray:
        """One-hot (items, FEATURES) float32 over the attribute values the item shows."""
        onehot = np.zeros((self.size, FEATURES), np.float32)
        for g in range(len(GROUPS)):
            shown = self.attributes[:, g] >= 0
            onehot[np.flatnonzero(shown), GROUP_OFFSETS[g] + self.attributes[shown, g]] = 1.0
        return onehot


def make_catalog(
    rng: np.random.Generator,
    domain: str,
    size: int,
    nouns: int,
    skew: float,
    looks: np.ndarray,
    coherence: float,
    groups=GROUPS,
) -> Catalog:
    """Items drawn from the shared looks: each value follows the item's look with `coherence`, else uniform."""
    look = rng.integers(0, len(looks), size)
    attributes = np.empty((size, len(GROUPS)), np.int64)
    for g, (offset, values) in enumerate(zip(GROUP_OFFSETS, GROUP_SIZES, strict=True)):
        from_look = _sample_rows(rng, looks[look, offset : offset + values])
        attributes[:, g] = np.where(rng.random(size) < coherence, from_look, rng.integers(0, values, size))
    tiers = attributes[:, GROUPS.index("tier")].copy()
    hidden = [g for g, name in enumerate(GROUPS) if name not in groups]
    attributes[:, hidden] = -1
    appeal = rng.normal(0.0, skew, size).astype(np.float32)
    return Catalog(domain, attributes, rng.integers(0, nouns, size), appeal, tiers)


# ----------------------------------------------------------------------------- users and choices


def _sample_rows(rng: np.random.Generator, probabilities: np.ndarray) -> np.ndarray:
    """One categorical draw per row (Gumbel-max)."""
    with np.errstate(divide="ignore"):
        return (np.log(probabilities) + rng.gumbel(size=probabilities.shape)).argmax(axis=1)


def sample_looks(rng: np.random.Generator, looks: int) -> np.ndarray:
    """(looks, FEATURES): coherent bundles of attribute values ('coastal': navy or teal, linen or cotton...).

    A look spreads its mass evenly over a few values per group (one in five), so the items of a look
    are all equally typical of it and no item is everybody's best fit.
    """
    bundles = np.zeros((looks, FEATURES), np.float32)
    for offset, values in zip(GROUP_OFFSETS, GROUP_SIZES, strict=True):
        width = max(1, values // 5)
        # dealt from a shuffled deck, so every value belongs to some look when looks * width >= values
        deck = np.concatenate([rng.permutation(values) for _ in range(-(-looks * width // values))])
        for look in range(looks):
            bundles[look, offset + deck[look * width : (look + 1) * width]] = 1.0 / width
    return bundles


def sample_tastes(rng: np.random.Generator, users: int, concentration: float) -> np.ndarray:
    """(users, FEATURES): one Dirichlet distribution per attribute group, concatenated."""
    raw = rng.gamma(concentration, size=(users, FEATURES)) + 1e-9
    sums = np.add.reduceat(raw, GROUP_OFFSETS, axis=1)
    return (raw / np.repeat(sums, GROUP_SIZES, axis=1)).astype(np.float32)


def sample_event_domains(
    rng: np.random.Generator,
    counts: np.ndarray,
    domain_weights: np.ndarray,
    mean_domains: float,
    stickiness: float,
) -> np.ndarray:
    """(users, max events) domain index per event, -1 past a user's last event.

    Each user is active in a few domains (weighted by `domain_weights`), with their own shares among
    them; an event repeats the previous event's domain with probability `stickiness` (sessions).
    """
    users, domains = len(counts), len(domain_weights)
    active = 1 + rng.binomial(domains - 1, min(1.0, (mean_domains - 1) / max(domains - 1, 1)), users)
    keys = np.log(domain_weights)[None, :] + rng.gumbel(size=(users, domains))
    rank = np.argsort(np.argsort(-keys, axis=1), axis=1)
    shares = np.where(rank < active[:, None], rng.gamma(1.0, size=(users, domains)), 0.0)
    cumulative = np.cumsum(shares / shares.sum(axis=1, keepdims=True), axis=1)
    steps = int(counts.max())
    draws = rng.random((users, steps))
    rows = np.arange(users)[:, None]
    picked = np.searchsorted((cumulative + rows).ravel(), (draws + rows).ravel(), side="right")
    picked = np.minimum(picked.reshape(users, steps) - rows * domains, domains - 1)
    # sessions: a sticky event copies the last fresh draw before it
    fresh = rng.random((users, steps)) >= stickiness
    fresh[:, 0] = True
    last_fresh = np.maximum.accumulate(np.where(fresh, np.arange(steps), 0), axis=1)
    picked = np.take_along_axis(picked, last_fresh, axis=1)
    picked[np.arange(steps)[None, :] >= counts[:, None]] = -1
    return picked


def simulate_choices(
    rng: np.random.Generator,
    taste_start: np.ndarray,
    taste_end: np.ndarray,
    event_domains: np.ndarray,
    catalogs: list[Catalog],
    taste_weight: float,
    recency_weight: float,
    recency_decay: float,
    season_phase: np.ndarray | None = None,
    seasonal_weight: float = 0.0,
    unwritten: tuple[float, np.ndarray] | None = None,
) -> np.ndarray:
    """(users, steps) global item index of each event (-1 = none), one vectorised step per position.

    The preference for attribute value v is p = (1 - recency_weight) * taste(t) + recency_weight * recent,
    where taste(t) moves linearly from `taste_start` to `taste_end` over the user's history and
    `recent` is an exponential average of the attributes of the user's past choices in *any*
    domain. In the seasonal groups (colour, theme) p is then mixed with the season's profile at the
    event's date (`season_phase`, a year fraction): (1 - seasonal_weight) * p + seasonal_weight * season.
    An item's score is taste_weight * sum of log p over its attribute values + its appeal (+, with
    `unwritten` = (weight, users' latent vectors), weight * the user's affinity with the item's
    unwritten qualities); the choice is a softmax draw (Gumbel-max) over the domain's items the user
    has not chosen yet.
    """
    users, steps = event_domains.shape
    counts = (event_domains >= 0).sum(axis=1)
    features = [c.features() for c in catalogs]
    seasonal = np.isin(np.repeat(np.array(GROUPS), GROUP_SIZES), list(SEASONAL))
    recent = taste_start.copy()
    chosen = np.full((users, steps), -1, np.int64)
    for t in range(steps):
        rows_t = np.flatnonzero(event_domains[:, t] >= 0)
        if not len(rows_t):
            break
        domain_t = event_domains[rows_t, t]
        for d in np.unique(domain_t):
            rows = rows_t[domain_t == d]
            catalog, onehot = catalogs[d], features[d]
            progress = (t / np.maximum(counts[rows] - 1, 1)).astype(np.float32)[:, None]
            taste = taste_start[rows] + (taste_end[rows] - taste_start[rows]) * progress
            preference = (1 - recency_weight) * taste + recency_weight * recent[rows]
            if season_phase is not None and seasonal_weight:
                season = season_profile(season_phase[rows, t])
                preference = np.where(
                    seasonal, (1 - seasonal_weight) * preference + seasonal_weight * season, preference
                )
            scores = taste_weight * (np.log(preference + 1e-6) @ onehot.T) + catalog.log_appeal
            if unwritten is not None:
                scores += unwritten[0] * (unwritten[1][rows] @ catalog.unwritten.T)
            if t:
                local = chosen[rows, :t] - catalog.offset
                r, k = np.nonzero((local >= 0) & (local < catalog.size))
                scores[r, local[r, k]] = -1e30  # no repeats while unseen items remain
            with np.errstate(divide="ignore"):
                scores -= np.log(-np.log(rng.random(scores.shape, dtype=np.float32)))
            pick = scores.argmax(axis=1)
            chosen[rows, t] = pick + catalog.offset
            recent[rows] += recency_decay * (onehot[pick] - recent[rows])
    return chosen


def season_profile(phase: np.ndarray) -> np.ndarray:
    """(len(phase), FEATURES): per seasonal group, a distribution peaking on the values in season at `phase`.

    A value's weight is exp(SEASON_SHARPNESS * cos(2 pi (phase - its peak))), normalised within its
    group; non-seasonal columns are 0.
    """
    angle = 2 * np.pi * (phase[:, None] - np.nan_to_num(SEASON_PEAK)[None, :])
    weight = np.where(np.isnan(SEASON_PEAK)[None, :], 0.0, np.exp(SEASON_SHARPNESS * np.cos(angle)))
    sums = np.add.reduceat(weight, GROUP_OFFSETS, axis=1)
    sums = np.repeat(np.where(sums > 0, sums, 1.0), GROUP_SIZES, axis=1)
    return (weight / sums).astype(np.float32)


def year_phase(epoch_ms: np.ndarray) -> np.ndarray:
    """Fraction of the calendar year (0 = 1 January) of Unix-ms times."""
    days = epoch_ms / 86_400_000
    return ((days % 365.2425) / 365.2425).astype(np.float32)


def event_times(
    rng: np.random.Generator, counts: np.ndarray, start_ms: int, end_ms: int, median_gap_days: float
):
    """(users, max count) strictly increasing Unix ms per user, inside [start_ms, end_ms)."""
    users, steps = len(counts), int(counts.max())
    day = 86_400_000
    gaps = np.exp(rng.normal(np.log(median_gap_days), 1.3, (users, steps))) * day
    gaps = np.maximum(gaps, 60_000)  # at least a minute apart: a user's order is never ambiguous
    gaps[:, 0] = 0
    gaps[np.arange(steps)[None, :] >= counts[:, None]] = 0
    span = (end_ms - start_ms) * 0.95
    total = gaps.sum(axis=1)
    gaps *= np.minimum(1.0, span / np.maximum(total, 1))[:, None]
    total = gaps.sum(axis=1)
    first = start_ms + rng.random(users) * (end_ms - start_ms - total - 1)
    return (first[:, None] + np.cumsum(gaps, axis=1)).astype(np.int64) + np.arange(steps)[None, :]


# ----------------------------------------------------------------------------- the world


@dataclass
class World:
    catalogs: list[Catalog]  # marketplace: PRETRAIN_DOMAINS then DOWNSTREAM_DOMAINS
    market_events: dict[str, np.ndarray]  # user, item (global), timestamp, rating: flat arrays
    retail_catalog: Catalog
    retail_lines: dict[str, np.ndarray]  # one row per CSV line
    user_ids: np.ndarray
    item_ids: np.ndarray  # global marketplace index -> parent_asin


def generate(config: SynthConfig) -> World:
    config.validate()
    streams = np.random.SeedSequence(config.seed).spawn(9)  # the 9th only with unwritten_taste: same worlds
    rng_items, rng_users, rng_domains, rng_choice, rng_time, rng_ids, rng_retail, rng_rating, rng_unwritten = (
        np.random.default_rng(s) for s in streams
    )
    specs = PRETRAIN_DOMAINS + DOWNSTREAM_DOMAINS
    looks = sample_looks(rng_items, config.looks)
    catalogs, offset = [], 0
    for spec in specs:
        skew = (
            config.pretrain_popularity_skew if spec in PRETRAIN_DOMAINS else config.downstream_popularity_skew
        )
        catalog = make_catalog(
            rng_items, spec.name, config.items_per_domain, len(spec.nouns), skew, looks, config.look_coherence
        )
        catalog.offset = offset
        offset += catalog.size
        catalogs.append(catalog)
    unwritten = None
    if config.unwritten_taste:
        for catalog in catalogs:
            catalog.unwritten = rng_unwritten.normal(size=(catalog.size, UNWRITTEN_DIMS)).astype(np.float32)
        users_latent = rng_unwritten.normal(size=(config.users, UNWRITTEN_DIMS)) / np.sqrt(UNWRITTEN_DIMS)
        unwritten = (config.unwritten_taste, users_latent.astype(np.float32))

    counts = _long_tailed_counts(rng_users, config.users, config.events_per_user, config.min_events_per_user)
    taste_start, taste_end = user_tastes(rng_users, config.users, looks, config)
    weights = np.array(
        [1.0] * len(PRETRAIN_DOMAINS) + [max(config.downstream_activity, 1e-9)] * len(DOWNSTREAM_DOMAINS)
    )
    domains = sample_event_domains(
        rng_domains, counts, weights, config.domains_per_user, config.domain_stickiness
    )
    times = event_times(rng_time, counts, _epoch_ms(config.start_date), _epoch_ms(config.end_date), 5.0)
    chosen = simulate_choices(
        rng_choice, taste_start, taste_end, domains, catalogs,
        config.taste_weight, config.recency_weight, config.recency_decay,
        year_phase(times), config.seasonal_weight, unwritten,
    )  # fmt: skip
    user, step = np.nonzero(chosen >= 0)
    item = chosen[user, step]
    all_attributes = np.concatenate([c.attributes for c in catalogs])
    market_events = {
        "user": user,
        "item": item,
        "domain": domains[user, step],
        "timestamp": times[user, step],
        "rating": _ratings(rng_rating, taste_start[user], all_attributes[item]),
    }
    retail_catalog, retail_lines = _retail(rng_retail, config, looks, rng_unwritten)
    return World(
        catalogs, market_events, retail_catalog, retail_lines,
        _amazon_user_ids(rng_ids, config.users), _asins(rng_ids, [c.size for c in catalogs], specs),
    )  # fmt: skip


def _long_tailed_counts(rng: np.random.Generator, users: int, mean: float, minimum: int) -> np.ndarray:
    """Lognormal activity: most users near the mean, a few heavy ones (capped at 5x the mean)."""
    sigma = 0.6
    extra = max(mean - minimum, 0.5)
    counts = minimum + np.exp(rng.normal(np.log(extra) - sigma**2 / 2, sigma, users))
    return np.minimum(np.round(counts), 5 * mean).astype(np.int64)


def user_tastes(
    rng: np.random.Generator, users: int, looks: np.ndarray, config: SynthConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Lasting taste at a user's first and last event: a mix of a few looks plus personal quirks."""

    def taste() -> np.ndarray:
        look_shares = rng.dirichlet(np.full(len(looks), config.taste_concentration), users).astype(np.float32)
        personal = sample_tastes(rng, users, config.taste_concentration)
        return (1 - config.personal_taste) * (look_shares @ looks) + config.personal_taste * personal

    start = taste()
    return start, (1 - config.drift) * start + config.drift * taste()


def _ratings(rng: np.random.Generator, taste: np.ndarray, attributes: np.ndarray) -> np.ndarray:
    """1..5 stars in the real shares; better-fitting items (by lasting taste) get more stars."""
    shown = attributes >= 0
    index = GROUP_OFFSETS[None, :] + np.where(shown, attributes, 0)
    fit = np.where(shown, np.log(np.take_along_axis(taste, index, axis=1) + 1e-6), 0).sum(axis=1)
    noisy = fit + rng.normal(0, fit.std() + 1e-6, len(fit))
    quantile = np.argsort(np.argsort(noisy, kind="stable"), kind="stable") / max(len(fit), 1)
    return (np.searchsorted(np.cumsum(_RATING_SHARES), quantile, side="right") + 1).astype(np.float64)


_ALNUM = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", np.uint8)


def _codes(
    rng: np.random.Generator, count: int, prefix: str, length: int, alphabet: np.ndarray
) -> np.ndarray:
    """`count` distinct random codes `prefix` + `length` characters."""
    codes: list[str] = []
    seen: set[str] = set()
    while len(codes) < count:
        draw = alphabet[rng.integers(0, len(alphabet), (count, length))]
        for row in draw:
            code = prefix + row.tobytes().decode()
            if code not in seen:
                seen.add(code)
                codes.append(code)
                if len(codes) == count:
                    break
    return np.array(codes, dtype=object)


def _amazon_user_ids(rng: np.random.Generator, users: int) -> np.ndarray:
    return _codes(rng, users, "A", 27, _ALNUM[10:])  # like 'AGKHLEW2SOWHNMFQIJGBECAF7INQ'


def _asins(rng: np.random.Generator, sizes: list[int], specs: list[DomainSpec]) -> np.ndarray:
    total = sum(sizes)
    asins = _codes(rng, total, "B0", 8, _ALNUM)
    isbns = _codes(rng, sizes[0], "", 10, _ALNUM[:10])  # books carry ISBN-10s as ASINs
    books = specs.index(PRETRAIN_DOMAINS[0])
    start = sum(sizes[:books])
    asins[start : start + sizes[books]] = isbns
    return asins


# ----------------------------------------------------------------------------- retail platform


def _retail(
    rng: np.random.Generator, config: SynthConfig, looks: np.ndarray, rng_unwritten: np.random.Generator
) -> tuple[Catalog, dict[str, np.ndarray]]:
    catalog = make_catalog(
        rng,
        RETAIL_DOMAIN,
        config.retail_items,
        len(RETAIL_NOUNS),
        config.downstream_popularity_skew,
        looks,
        config.look_coherence,
        RETAIL_GROUPS,
    )
    customers = config.retail_users
    invoices = np.minimum(rng.geometric(1 / config.invoices_per_customer, customers), 60)
    basket_sizes = 1 + rng.poisson(config.items_per_invoice - 1, invoices.sum())
    basket_sizes = np.minimum(basket_sizes, config.retail_items)
    invoice_customer = np.repeat(np.arange(customers), invoices)
    counts = np.bincount(invoice_customer, weights=basket_sizes, minlength=customers).astype(np.int64)
    steps = int(counts.max())
    domains = np.where(np.arange(steps)[None, :] < counts[:, None], 0, -1)
    start, end = user_tastes(rng, customers, looks, config)
    unwritten = None
    if config.unwritten_taste:  # the retail platform's customers and catalogue: their own qualities
        catalog.unwritten = rng_unwritten.normal(size=(catalog.size, UNWRITTEN_DIMS)).astype(np.float32)
        latent = rng_unwritten.normal(size=(customers, UNWRITTEN_DIMS)) / np.sqrt(UNWRITTEN_DIMS)
        unwritten = (config.unwritten_taste, latent.astype(np.float32))
    # invoice days: at least a day apart, squeezed into the real file's year when needed
    first_day, last_day = _epoch_ms("2010-12-01"), _epoch_ms("2011-12-09")
    span_days = (last_day - first_day) // 86_400_000
    extra = np.exp(rng.normal(np.log(20), 1.0, len(invoice_customer)))
    invoice_rank = np.arange(len(invoice_customer)) - np.repeat(np.cumsum(invoices) - invoices, invoices)
    extra[invoice_rank == 0] = 0
    budget = np.maximum(span_days - (invoices - 1), 0)
    scale = np.minimum(1.0, budget / np.maximum(np.bincount(invoice_customer, weights=extra), 1e-9))
    gaps = (invoice_rank > 0) + extra * scale[invoice_customer]
    days = np.floor(_segment_cumsum(gaps, invoices)).astype(np.int64)
    offset_days = np.floor(
        rng.random(customers) * (span_days - days.reshape(-1)[np.cumsum(invoices) - 1] + 1)
    )
    day = days + offset_days[invoice_customer].astype(np.int64)
    minute = rng.integers(8 * 60, 18 * 60, len(invoice_customer))
    invoice_time = first_day + day * 86_400_000 + minute * 60_000

    line_invoice = np.repeat(np.arange(len(invoice_customer)), basket_sizes)
    line_step = np.arange(len(line_invoice)) - np.repeat(np.cumsum(counts) - counts, counts)
    phase = np.zeros((customers, steps), np.float32)
    phase[invoice_customer[line_invoice], line_step] = year_phase(invoice_time[line_invoice])
    chosen = simulate_choices(
        rng, start, end, domains, [catalog], config.taste_weight, config.recency_weight, config.recency_decay,
        phase, config.seasonal_weight, unwritten,
    )  # fmt: skip
    user, step = np.nonzero(chosen >= 0)
    country = rng.integers(0, len(RETAIL_COUNTRIES), customers)
    lines = {
        "invoice": line_invoice,
        "customer": invoice_customer[line_invoice],
        "item": chosen[user, step],  # nonzero walks customers in order, as do the invoices
        "time": invoice_time[line_invoice],
        "quantity": rng.choice([1, 2, 3, 4, 6, 6, 12, 12, 24], len(line_invoice)),
        "country": country[invoice_customer[line_invoice]],
        "kind": np.zeros(len(line_invoice), np.int8),  # 0 sale, 1 cancellation, 2 guest, 3 postage
    }
    assert np.array_equal(user, lines["customer"])
    return catalog, _retail_noise(rng, lines, catalog.size, config)


def _segment_cumsum(values: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    total = np.cumsum(values)
    starts = np.cumsum(lengths) - lengths
    return total - np.repeat(total[starts] - values[starts], lengths)


def _retail_noise(
    rng: np.random.Generator, lines: dict, items: int, config: SynthConfig
) -> dict[str, np.ndarray]:
    """What the real file has beside sales: cancellations, guest checkouts and postage lines."""
    n = len(lines["item"])
    invoices = int(lines["invoice"].max()) + 1
    cancelled = np.flatnonzero(rng.random(n) < config.retail_cancel_rate)
    cancel = {k: v[cancelled].copy() for k, v in lines.items()}
    cancel["time"] += rng.integers(1, 3 * 24 * 60, len(cancelled)) * 60_000
    cancel["invoice"] = invoices + np.arange(len(cancelled))
    cancel["quantity"] = -cancel["quantity"]
    cancel["kind"][:] = 1
    guests = round(n * config.retail_guest_rate)
    guest_invoices = max(guests // 3, 1)
    guest_invoice = rng.integers(0, guest_invoices, guests)
    first, last = int(lines["time"].min()), int(lines["time"].max())
    day = 86_400_000
    guest_days = rng.integers(first // day, last // day + 1, guest_invoices)
    guest_time = guest_days * day + rng.integers(8 * 60, 18 * 60, guest_invoices) * 60_000
    guest = {
        "invoice": invoices + len(cancelled) + guest_invoice,
        "customer": np.full(guests, -1),
        "item": rng.integers(0, items, guests),
        "time": guest_time[guest_invoice],
        "quantity": rng.choice([1, 2, 6, 12], guests),
        "country": np.zeros(guests, np.int64),
        "kind": np.full(guests, 2, np.int8),
    }
    # postage lines on roughly half the invoices sent abroad
    first_line = np.unique(lines["invoice"], return_index=True)[1]
    foreign = np.array([c != "United Kingdom" for c in RETAIL_COUNTRIES])[lines["country"][first_line]]
    abroad = first_line[foreign & (rng.random(len(first_line)) < 0.5)]
    post = {k: v[abroad].copy() for k, v in lines.items()}
    post["item"][:] = -1
    post["quantity"][:] = rng.integers(1, 4, len(abroad))
    post["kind"][:] = 3
    merged = {k: np.concatenate([lines[k], cancel[k], guest[k], post[k]]) for k in lines}
    # invoice numbers follow time, as in the real file; lines keep their order within an invoice
    invoice_time = np.full(int(merged["invoice"].max()) + 1, np.iinfo(np.int64).max)
    np.minimum.at(invoice_time, merged["invoice"], merged["time"])
    invoice_order = np.argsort(invoice_time, kind="stable")
    number = np.empty_like(invoice_order)
    number[invoice_order] = np.arange(len(invoice_order))
    merged["invoice_number"] = FIRST_INVOICE + number[merged["invoice"]]
    order = np.lexsort((merged["kind"] == 3, np.arange(len(merged["item"])), merged["invoice_number"]))
    return {k: v[order] for k, v in merged.items()}


# ----------------------------------------------------------------------------- writing


SYNTH_STAGE = "data synth"  # names the stage in the world's _SUCCESS marker


def synthesize(config: SynthConfig) -> str:
    """Generates the world and writes it under `config.out_dir`; returns the path of its world.json."""
    config.validate()
    final = storage.absolute(config.out_dir)
    storage.check_replaceable(final, SYNTH_STAGE)  # before the work: refuse someone's directory early
    world = generate(config)
    if storage.is_local(final):
        with storage.atomic_output(final, SYNTH_STAGE) as staging:
            write_world(world, config, staging, final)
    else:
        import pyarrow.fs as pafs

        with tempfile.TemporaryDirectory() as local:
            write_world(world, config, local, final)
            with storage.atomic_output(final, SYNTH_STAGE) as target:
                fs, path = storage.filesystem(target)
                pafs.copy_files(local, path, destination_filesystem=fs)
    return storage.join(final, "world.json")


def write_world(world: World, config: SynthConfig, directory: str, final: str) -> None:
    """Writes the files into `directory`; world.json names them as they will be under `final`."""
    import duckdb

    os.makedirs(os.path.join(directory, "marketplace"), exist_ok=True)
    os.makedirs(os.path.join(directory, "retail"), exist_ok=True)
    con = duckdb.connect()
    con.execute("SET threads TO 2")
    con.execute("SET preserve_insertion_order TO true")
    con.execute("SET enable_progress_bar TO false")
    suffix = ".jsonl.gz" if config.gzip else ".jsonl"
    compression = "gzip" if config.gzip else "none"
    specs = PRETRAIN_DOMAINS + DOWNSTREAM_DOMAINS
    events = world.market_events
    counts: dict[str, dict[str, int]] = {}
    for d, (spec, catalog) in enumerate(zip(specs, world.catalogs, strict=True)):
        in_domain = events["domain"] == d
        item_rating = np.bincount(events["item"][in_domain] - catalog.offset, minlength=catalog.size)
        stars = np.bincount(
            events["item"][in_domain] - catalog.offset,
            weights=events["rating"][in_domain],
            minlength=catalog.size,
        )
        meta = _meta_table(world, spec, catalog, item_rating, stars)
        con.register("meta", meta)
        con.execute(
            "COPY (SELECT * REPLACE (details::JSON AS details) FROM meta) "
            f"TO '{_sql_path(directory, 'marketplace', f'meta_{spec.name}{suffix}')}' "
            f"(FORMAT JSON, COMPRESSION {compression})"
        )
        con.register("reviews", _review_table(world, spec, catalog, in_domain))
        con.register("words", _review_words())
        con.execute(
            f"""COPY (
                SELECT r.rating, w.title,
                       w.opening || ' The ' || lower(r.color) || ' ' || lower(r.material) || ' '
                           || w.verdict || '.' AS text,
                       r.parent_asin AS asin, r.parent_asin, r.user_id, r.timestamp, r.helpful_vote,
                       r.verified_purchase
                FROM reviews r JOIN words w ON w.rating = r.rating AND w.variant = r.variant
                ORDER BY r.user_index, r.timestamp
            ) TO '{_sql_path(directory, "marketplace", spec.name + suffix)}' (FORMAT JSON, COMPRESSION {compression})"""
        )
        counts[spec.name] = {
            "events": int(in_domain.sum()),
            "users": len(np.unique(events["user"][in_domain])),
            "items": catalog.size,
        }
    con.register("retail", _retail_table(world))
    con.execute(
        f"""COPY (
            SELECT InvoiceNo, StockCode, Description, Quantity,
                   strftime(epoch_ms(InvoiceDate), '%-m/%-d/%Y %-H:%M') AS InvoiceDate,
                   UnitPrice, CustomerID, Country
            FROM retail
        ) TO '{_sql_path(directory, "retail", "online_retail.csv")}' (FORMAT CSV, HEADER)"""
    )
    lines = world.retail_lines
    sales = lines["kind"] == 0
    counts[RETAIL_DOMAIN] = {
        "events": int(sales.sum()),
        "users": len(np.unique(lines["customer"][sales])),
        "items": world.retail_catalog.size,
        "csv_lines": len(lines["kind"]),
    }
    con.close()
    market = storage.join(final, "marketplace")

    def source(fmt: str, path: str, **kw: Any) -> dict[str, Any]:
        return {"format": fmt, "path": path, "domains": [], "domain": "", **kw}

    manifest = {
        "template_version": TEMPLATE_VERSION,
        "seed": config.seed,
        "generator": "cprec.data_prep.synth",
        "pretrain": [source("amazon2023", market, domains=[s.name]) for s in PRETRAIN_DOMAINS],
        "downstream": [
            *({"name": s.name, "platform": "marketplace", "source": source("amazon2023", market, domains=[s.name])}
              for s in DOWNSTREAM_DOMAINS),
            {
                "name": RETAIL_DOMAIN,
                "platform": "retail",
                "source": source("online_retail", storage.join(final, "retail", "online_retail.csv"),
                                 domain=RETAIL_DOMAIN),
            },
        ],
        "counts": counts,
        "config": {k: v for k, v in to_dict(config).items() if k != "out_dir"},
    }  # fmt: skip
    storage.write_text(os.path.join(directory, "world.json"), json.dumps(manifest, indent=2) + "\n")


def _sql_path(*parts: str) -> str:
    return os.path.join(*parts).replace("'", "''")


def _attribute_words(catalog: Catalog, group: str) -> np.ndarray:
    g = GROUPS.index(group)
    words = np.array(ATTRIBUTES[group], dtype=object)
    return words[np.maximum(catalog.attributes[:, g], 0)]


def _meta_table(world: World, spec: DomainSpec, catalog: Catalog, rating_number, stars):
    import pyarrow as pa

    rng = np.random.default_rng([catalog.offset, catalog.size, 7])
    words = {group: _attribute_words(catalog, group) for group in GROUPS}
    tiers = catalog.attributes[:, GROUPS.index("tier")]
    brands = _brands(rng, 12)
    # three stores per price tier: a store's range sits at one price level, as real stores' do
    brand = [brands[3 * t + int(b)] for t, b in zip(tiers, rng.integers(0, 3, catalog.size), strict=True)]
    nouns = [spec.nouns[n] for n in catalog.nouns]
    price = np.round(
        np.round(spec.base_price * TIER_PRICE[tiers] * np.exp(rng.normal(0, 0.2, catalog.size))) - 0.01, 2
    )
    has_price = rng.random(catalog.size) >= 0.15  # real metadata often lacks a price
    titles, features, descriptions, details = [], [], [], []
    for i, (noun, _) in enumerate(nouns):
        w = {group: words[group][i] for group in GROUPS}
        titles.append(spec.title.format(noun=noun, **w))
        features.append(
            [
                f"MATERIAL: {w['material']}",
                f"DESIGN: {w['theme']} motif in {_article(w['style']).lower()} {w['style'].lower()} style",
            ]
        )
        description = (
            f"{_article(w['style'])} {w['style'].lower()} {noun.lower()} in {w['color'].lower()}, "
            f"with a {w['theme'].lower()} motif. Made of {w['material'].lower()}."
        )
        descriptions.append([description])
        details.append(json.dumps({"Brand": brand[i], "Color": w["color"], "Material": w["material"]}))
    average = np.where(rating_number > 0, np.round(stars / np.maximum(rating_number, 1), 1), np.nan)
    return pa.table(
        {
            "main_category": [spec.main_category] * catalog.size,
            "title": titles,
            "average_rating": pa.array(average, pa.float64(), mask=rating_number == 0),
            "rating_number": rating_number.astype(np.int64),
            "features": features,
            "description": descriptions,
            "price": pa.array(price, pa.float64(), mask=~has_price),
            "store": brand,
            "categories": [[spec.top_category, leaf] for _, leaf in nouns],
            "details": details,
            "parent_asin": world.item_ids[catalog.offset : catalog.offset + catalog.size].tolist(),
        }
    )


def _article(word: str) -> str:
    return "An" if word[0].lower() in "aeiou" else "A"


def _brands(rng: np.random.Generator, count: int) -> list[str]:
    names: list[str] = []
    while len(names) < count:
        name = _BRAND_HEADS[rng.integers(len(_BRAND_HEADS))] + _BRAND_TAILS[rng.integers(len(_BRAND_TAILS))]
        if name not in names:
            names.append(name)
    return names


def _review_table(world: World, spec: DomainSpec, catalog: Catalog, in_domain: np.ndarray):
    import pyarrow as pa

    events = world.market_events
    user = events["user"][in_domain]
    local = events["item"][in_domain] - catalog.offset
    rng = np.random.default_rng([catalog.offset, catalog.size, 11])
    n = len(user)
    return pa.table(
        {
            "user_index": user,
            "user_id": world.user_ids[user].tolist(),
            "parent_asin": world.item_ids[events["item"][in_domain]].tolist(),
            "rating": events["rating"][in_domain],
            "timestamp": events["timestamp"][in_domain],
            "color": _attribute_words(catalog, "color")[local].tolist(),
            "material": _attribute_words(catalog, "material")[local].tolist(),
            "variant": rng.integers(0, REVIEW_VARIANTS, n),
            "verified_purchase": rng.random(n) < 0.9,
            "helpful_vote": rng.geometric(0.6, n) - 1,
        }
    )


def _review_words():
    import pyarrow as pa

    rows = [
        (float(stars), variant, titles[variant % len(titles)], titles[(variant + 1) % len(titles)] + ".",
         _REVIEW_VERDICTS[stars])
        for stars, titles in _REVIEW_TITLES.items()
        for variant in range(REVIEW_VARIANTS)
    ]  # fmt: skip
    rating, variant, title, opening, verdict = zip(*rows, strict=True)
    return pa.table(
        {"rating": rating, "variant": variant, "title": title, "opening": opening, "verdict": verdict}
    )


def _retail_table(world: World):
    import pyarrow as pa

    catalog, lines = world.retail_catalog, world.retail_lines
    rng = np.random.default_rng([catalog.size, 13])
    codes = rng.choice(np.arange(20000, 90000), catalog.size, replace=False)
    letters = np.where(rng.random(catalog.size) < 0.15, np.array(list("ABCDEFGHJKLMNPRSW"))[
        rng.integers(0, 17, catalog.size)], "")  # fmt: skip
    stock_codes = np.array([f"{c}{s}" for c, s in zip(codes, letters, strict=True)], dtype=object)
    words = {group: _attribute_words(catalog, group) for group in RETAIL_GROUPS}
    descriptions = np.array(
        [
            " ".join([*(words[g][i].upper() for g in RETAIL_GROUPS), RETAIL_NOUNS[catalog.nouns[i]]])
            for i in range(catalog.size)
        ],
        dtype=object,
    )
    prices = RETAIL_PRICES[catalog.tiers]
    item = lines["item"]
    postage = item < 0
    safe = np.maximum(item, 0)
    kind = lines["kind"]
    invoice = np.where(kind == 1, "C", "").astype(object) + lines["invoice_number"].astype(str).astype(object)
    customer = np.where(lines["customer"] >= 0, lines["customer"] + FIRST_CUSTOMER, 0)
    return pa.table(
        {
            "InvoiceNo": invoice.tolist(),
            "StockCode": np.where(postage, "POST", stock_codes[safe]).tolist(),
            "Description": np.where(postage, "POSTAGE", descriptions[safe]).tolist(),
            "Quantity": lines["quantity"].astype(np.int64),
            "InvoiceDate": lines["time"].astype(np.int64),
            "UnitPrice": np.where(postage, 18.0, prices[safe]),
            "CustomerID": pa.array(customer.astype(str), mask=lines["customer"] < 0),
            "Country": np.array(RETAIL_COUNTRIES, dtype=object)[lines["country"]].tolist(),
        }
    )
