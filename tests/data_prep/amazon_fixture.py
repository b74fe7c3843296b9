"""A tiny Amazon-Reviews-2023-layout world written by the tests themselves (no synth needed)."""

from __future__ import annotations

import json
import random
from pathlib import Path

DOMAINS = ("Books", "Home_and_Kitchen", "Toys_and_Games")
BASE_MS = 1_600_000_000_000


def write_world(root: Path, users: int = 40, items: int = 12, seed: int = 0) -> Path:
    """`<Domain>.jsonl` + `meta_<Domain>.jsonl` per domain; every user active in 2-3 domains."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    for d, domain in enumerate(DOMAINS):
        with open(root / f"meta_{domain}.jsonl", "w") as meta:
            meta.writelines(json.dumps(
                        {
                            "parent_asin": f"{domain[:2].upper()}{i:04d}",
                            "title": f"{rng.choice(['Red', 'Blue', 'Green'])} {domain.split('_')[0].lower()} thing {i}",
                            "store": rng.choice(["Acme", "Northwind", None]),
                            "categories": [domain, f"Leaf {i % 3}"],
                            "main_category": domain,
                        }
                    )
                    + "\n" for i in range(items))
        with open(root / f"{domain}.jsonl", "w") as events:
            for u in range(users):
                if (u + d) % 5 == 0:  # each user skips one domain in five
                    continue
                events.writelines(json.dumps(
                            {
                                "user_id": f"U{u:03d}",
                                "parent_asin": f"{domain[:2].upper()}{i:04d}",
                                "rating": 5.0,
                                "timestamp": BASE_MS + 3_600_000 * (u * 7 + n * 3 + d),
                                "title": "review",
                                "text": "fine",
                            }
                        )
                        + "\n" for n, i in enumerate(rng.sample(range(items), 6)))
    return root
